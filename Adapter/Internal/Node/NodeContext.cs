using Microsoft.Extensions.Logging;

namespace SignalR.RedisStreams.Internal;

/// <summary>What every part of one node knows about it: its id, options, keys, logger and instruments (read-only).</summary>
internal sealed record NodeContext(string NodeId, RedisStreamsOptions Options, RedisStreamsKeys Keys, ILogger Logger, BackplaneInstruments Instruments);
