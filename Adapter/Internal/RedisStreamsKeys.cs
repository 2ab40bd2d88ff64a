using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>Every Redis key the backplane touches, built in one place. All of them start with
/// <c>KeyPrefix + StreamName</c>, so a stream name with a hash tag (e.g. <c>"{chat}"</c>) keeps them in one cluster slot.</summary>
internal sealed class RedisStreamsKeys(string prefix, string streamName)
{
    private readonly string _base = prefix + streamName;

    /// <summary>The stream itself.</summary>
    public RedisKey Stream => _base;

    /// <summary>The stream's key as text (for logs and span names).</summary>
    public string StreamName => _base;

    /// <summary>String: a random id set when the stream's Redis was first used; a different or missing value means
    /// Redis restarted empty.</summary>
    public RedisKey Epoch => _base + ":epoch";

    /// <summary>Hash: node id → last sequence number that node appended (makes publishing idempotent and ordered).</summary>
    public RedisKey Sequences => _base + ":seq";

    /// <summary>Hash: connection id → id of the node that holds it.</summary>
    public RedisKey Connections => _base + ":connections";
}
