using System.Collections.Concurrent;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>Every Redis key of one stream (one shard, see <see cref="StreamShards"/>), built in one place. All of them
/// start with the same hash tag, <c>{KeyPrefix + StreamName}</c> for a single stream (or the name as it is when it
/// already holds a tag), so that every script's keys share one Redis Cluster slot.</summary>
internal sealed class RedisStreamsKeys
{
    private readonly string _base;

    // The fixed keys, built once (every append names four of them), and the inbox keys of the nodes seen lately.
    private readonly RedisKey _epoch, _clock, _sequences, _totals, _connections;
    private readonly ConcurrentDictionary<string, (RedisKey Inbox, RedisKey Sequences)> _inboxes = new();
    private const int InboxesKept = 1024;

    /// <summary>The keys of the single stream of <paramref name="prefix"/> + <paramref name="streamName"/>.</summary>
    public RedisStreamsKeys(string prefix, string streamName)
        : this(StreamShards.Base(prefix + streamName, 0, 1))
    {
    }

    /// <summary>The keys that start with <paramref name="keyBase"/> (which holds the hash tag).</summary>
    internal RedisStreamsKeys(string keyBase)
    {
        _base = keyBase;
        _epoch = _base + ":epoch";
        _clock = _base + ":clock";
        _sequences = _base + ":seq";
        _totals = _base + ":seq-total";
        _connections = _base + ":connections";
        SharedAppendKeys = [_epoch, _clock, Stream, _sequences, _totals];
    }

    /// <summary>The append script's keys for a batch that goes to the shared stream only (see
    /// <see cref="IdempotentAppend"/>): epoch, clock, stream, its sequence hash, totals. Shared: never written to.</summary>
    public RedisKey[] SharedAppendKeys { get; }

    /// <summary>The stream itself.</summary>
    public RedisKey Stream => _base;

    /// <summary>The stream's key as text (for logs and span names).</summary>
    public string StreamName => _base;

    /// <summary>String: a random id set when the stream's Redis was first used; a different or missing value means
    /// Redis restarted empty.</summary>
    public RedisKey Epoch => _epoch;

    /// <summary>String: the last entry id given to any of the app's streams ("ms-seq"). Every append takes the next id
    /// from it, so ids are ordered across the shared stream and every inbox: a node reading two streams can merge them
    /// in the order Redis appended them.</summary>
    public RedisKey Clock => _clock;

    /// <summary>Hash: node id → last sequence number that node appended (makes publishing idempotent and ordered).</summary>
    public RedisKey Sequences => _sequences;

    /// <summary>Hash: node id → the sum of that node's last sequence numbers over every channel of this stream (kept by
    /// the append script), so that an append to one channel notices that Redis lost the node's latest entries on
    /// another (a replica promoted without them).</summary>
    public RedisKey Totals => _totals;

    /// <summary>Stream: the inbox of one node, where packets addressed to that node (or to one of its connections) go,
    /// so that no other node reads them.</summary>
    public RedisKey Inbox(string node) => InboxKeys(node).Inbox;

    /// <summary>Hash: sender node id → last sequence number that sender appended to <paramref name="node"/>'s inbox.</summary>
    public RedisKey InboxSequences(string node) => InboxKeys(node).Sequences;

    private (RedisKey Inbox, RedisKey Sequences) InboxKeys(string node)
    {
        if (_inboxes.TryGetValue(node, out var keys))
        {
            return keys;
        }
        keys = (_base + ":node:" + node, _base + ":node:" + node + ":seq");
        if (_inboxes.Count < InboxesKept)
        {
            // Node ids change with every start: past this many, keys are built each time rather than kept forever.
            _inboxes.TryAdd(node, keys);
        }
        return keys;
    }

    /// <summary>How long an inbox outlives its last write and its owner's last heartbeat: the inbox of a node that died
    /// without a goodbye goes away by itself.</summary>
    public static readonly TimeSpan InboxLifetime = TimeSpan.FromHours(1);

    /// <summary>Hash: connection id → id of the node that holds it.</summary>
    public RedisKey Connections => _connections;

    /// <summary>Hash: one recoverable session (connection-state recovery): its user, hub, current connection and node,
    /// and one field per group (<c>g:</c> + name) whose value is the position at which it joined. Expires
    /// <c>MaxDisconnectionDuration</c> after its connection's node last refreshed it.</summary>
    public RedisKey Session(string token) => _base + ":session:" + token;
}
