using Microsoft.Extensions.Logging;

namespace SignalR.RedisStreams.Internal;

/// <summary>Every log message of the backplane, source-generated, with stable event ids.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "Redis Streams backplane node {NodeId} starting on stream '{Stream}'; it sends on '{SendStream}' (stream {SendShard} of {StreamCount}).")]
    public static partial void Starting(ILogger logger, string nodeId, string stream, string sendStream, int sendShard, int streamCount);

    [LoggerMessage(2, LogLevel.Information, "Node {NodeId} reads stream '{Stream}' from entry {StartId}.")]
    public static partial void ReaderPositioned(ILogger logger, string nodeId, string stream, string startId);

    [LoggerMessage(3, LogLevel.Warning, "Reading stream '{Stream}' after {Cursor} failed (attempt {Attempt}); retrying in {DelayMs} ms.")]
    public static partial void ReadFailed(ILogger logger, Exception exception, string stream, string cursor, int attempt, int delayMs);

    [LoggerMessage(4, LogLevel.Warning, "Publishing {Count} entries failed (attempt {Attempt}); they stay in order and are retried in {DelayMs} ms.")]
    public static partial void PublishFailed(ILogger logger, Exception exception, int count, int attempt, int delayMs);

    [LoggerMessage(5, LogLevel.Warning, "Skipped malformed entry {EntryId} in stream '{Stream}': {Reason}")]
    public static partial void MalformedEntry(ILogger logger, string entryId, string stream, string reason);

    [LoggerMessage(6, LogLevel.Error, "Gap: {Missing} entries from node {Sender} in stream '{Stream}' were never read (had sequence {LastSeen}, next read was {Sequence}); they were trimmed (MaxLength) or lost by Redis.")]
    public static partial void GapDetected(ILogger logger, long missing, string sender, string stream, long lastSeen, long sequence);

    [LoggerMessage(7, LogLevel.Warning, "Redis was restarted without its data (epoch {OldEpoch} -> {NewEpoch}); republishing {Count} recent entries and re-registering connections.")]
    public static partial void RedisRestartDetected(ILogger logger, string oldEpoch, string newEpoch, int count);

    [LoggerMessage(8, LogLevel.Information, "Node {Node} joined.")]
    public static partial void NodeJoined(ILogger logger, string node);

    [LoggerMessage(9, LogLevel.Information, "Node {Node} is gone ({Reason}).")]
    public static partial void NodeGone(ILogger logger, string node, string reason);

    [LoggerMessage(10, LogLevel.Warning, "{Count} packet(s), the last a {Kind}, waited {Timeout} without being published and were dropped from the outbox; their senders got an exception (at most one such line a second).")]
    public static partial void PublishTimedOut(ILogger logger, long count, EntryKind kind, TimeSpan timeout);

    [LoggerMessage(11, LogLevel.Warning, "Writing to connection {ConnectionId} failed.")]
    public static partial void WriteFailed(ILogger logger, Exception exception, string connectionId);

    [LoggerMessage(12, LogLevel.Warning, "On the {Channel}, Redis holds sequence {Last} for this node but {Sequence} was next: republishing {Count} entries from the replay window.")]
    public static partial void SequenceRepair(ILogger logger, string channel, long last, long sequence, int count);

    [LoggerMessage(13, LogLevel.Error, "Redis lost {Missing} entries this node published that are older than the replay window; they cannot be republished.")]
    public static partial void ReplayWindowExceeded(ILogger logger, long missing);

    [LoggerMessage(14, LogLevel.Warning, "Handling entry {EntryId} ({Kind}) failed; the reader goes on.")]
    public static partial void DispatchFailed(ILogger logger, Exception exception, string entryId, EntryKind kind);

    [LoggerMessage(15, LogLevel.Warning, "Updating the connection registry failed; it is rewritten when Redis is back.")]
    public static partial void RegistryFailed(ILogger logger, Exception exception);

    [LoggerMessage(16, LogLevel.Debug, "Heartbeat failed.")]
    public static partial void HeartbeatFailed(ILogger logger, Exception exception);

    [LoggerMessage(17, LogLevel.Warning, "A result arrived for unknown invocation {InvocationId}; ignored.")]
    public static partial void UnknownInvocation(ILogger logger, string invocationId);

    [LoggerMessage(18, LogLevel.Information, "Node {NodeId} stopping: {Pending} packets still in the outbox.")]
    public static partial void Stopping(ILogger logger, string nodeId, int pending);

    [LoggerMessage(19, LogLevel.Information, "Reading stream '{Stream}' recovered after {Attempts} failed attempts; resuming after {Cursor}.")]
    public static partial void ReadRecovered(ILogger logger, string stream, int attempts, string cursor);

    [LoggerMessage(28, LogLevel.Warning, "Reading stream '{Stream}' timed out; the next reads ask for {Count} entries at a time (growing back after each read that works).")]
    public static partial void ReadCountReduced(ILogger logger, string stream, int count);

    [LoggerMessage(20, LogLevel.Information, "Publishing recovered after {Attempts} failed attempts.")]
    public static partial void PublishRecovered(ILogger logger, int attempts);

    [LoggerMessage(21, LogLevel.Warning, "A connection was refused: the stream could not be read within {Timeout} (RedisStreamsOptions.PublishTimeout).")]
    public static partial void ConnectionRefused(ILogger logger, TimeSpan timeout);

    [LoggerMessage(22, LogLevel.Critical, "The backplane cannot run with this Redis user; it will not read or publish.")]
    public static partial void MissingRights(ILogger logger, Exception exception);

    [LoggerMessage(23, LogLevel.Warning, "Skipped entry {EntryId} in stream '{Stream}': it claims sequence {Sequence} of node {Sender}, but Redis gave that node only up to {Known}; it was not appended by the backplane.")]
    public static partial void ForgedEntry(ILogger logger, string entryId, string stream, long sequence, string sender, long known);

    [LoggerMessage(24, LogLevel.Warning, "Skipping entries for hub '{Hub}', which this node does not serve (counted in signalr.redis_streams.unknown_hub; logged once per hub).")]
    public static partial void UnknownHub(ILogger logger, string hub);

    [LoggerMessage(25, LogLevel.Information, "Connection {ConnectionId} recovered the session of connection {OldConnectionId} (node {OldNode}): {Replayed} missed messages replayed.")]
    public static partial void SessionRecovered(ILogger logger, string connectionId, string oldConnectionId, string oldNode, int replayed);

    [LoggerMessage(26, LogLevel.Warning, "Connection {ConnectionId} was not recovered: {Reason}. It starts a fresh session.")]
    public static partial void SessionNotRecovered(ILogger logger, string connectionId, string reason);

    [LoggerMessage(27, LogLevel.Warning, "Writing the recovery session of connection {ConnectionId} to Redis failed.")]
    public static partial void SessionWriteFailed(ILogger logger, Exception exception, string connectionId);
}
