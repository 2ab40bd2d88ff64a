using Microsoft.Extensions.Logging;

namespace SignalR.RedisStreams.Internal;

/// <summary>What every part of one node knows about it: its id, options, keys, logger and instruments (read-only), and
/// the signal of its Redis Cluster slots moving (<see cref="TopologySignal"/>; never raised on a single Redis).</summary>
internal sealed record NodeContext(string NodeId, RedisStreamsOptions Options, RedisStreamsKeys Keys, ILogger Logger, BackplaneInstruments Instruments)
{
    public TopologySignal Topology { get; init; } = new();
}
