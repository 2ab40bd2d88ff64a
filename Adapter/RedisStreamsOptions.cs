using StackExchange.Redis;

namespace SignalR.RedisStreams;

/// <summary>Options of the Redis Streams SignalR backplane. Validated at start-up: an invalid value fails the host's
/// start with a message that names the option.</summary>
public sealed class RedisStreamsOptions
{
    /// <summary>Options with every default (see each property); usually configured through <c>AddRedisStreams(...)</c>.</summary>
    public RedisStreamsOptions()
    {
    }

    /// <summary>Redis connection settings. When null and no <see cref="ConnectionFactory"/> is set, the
    /// <see cref="IConnectionMultiplexer"/> registered in DI is used (what Aspire's <c>AddRedisClient</c> registers),
    /// else <c>localhost:6379</c>. Default null.</summary>
    public ConfigurationOptions? Configuration { get; set; }

    /// <summary>Creates a Redis connection; takes precedence over <see cref="Configuration"/>. Called once per node
    /// for commands, and once for each stream's dedicated blocking reader (see <see cref="StreamCount"/>). The writer receives the multiplexer's log. Default null.</summary>
    public Func<TextWriter, Task<IConnectionMultiplexer>>? ConnectionFactory { get; set; }

    /// <summary>The one stream all hubs share; each entry names its hub. Give each app its own. Default <c>"signalr"</c>.</summary>
    public string StreamName { get; set; } = "signalr";

    /// <summary>How many streams the packets are spread over, each with its own keys under its own Redis Cluster hash
    /// tag (on a cluster whose masters split the slots evenly, each stream lands on its own master). Each node writes
    /// everything it sends to one of them, chosen by its node id, and reads all of them: every packet from one node to
    /// one connection keeps its order; there is no order between different senders. At most 64. More than 1 cannot be
    /// combined with <see cref="ConnectionStateRecovery"/>. Default 1.</summary>
    public int StreamCount { get; set; } = 1;

    /// <summary>Tests only: the node's id instead of a random one (which picks the stream it sends on).</summary>
    internal string? NodeIdForTests { get; set; }

    /// <summary>Prefix of every key the backplane uses, so several apps can share one Redis. Default empty.</summary>
    public string KeyPrefix { get; set; } = "";

    /// <summary>Approximate bound of the stream (<c>XADD MAXLEN ~</c>). A node that falls further behind than this
    /// detects and reports the gap. Default 10 000.</summary>
    public int MaxLength { get; set; } = 10_000;

    /// <summary>Entries read per XREAD. Default 100.</summary>
    public int ReadCount { get; set; } = 100;

    /// <summary>How often a node announces itself. Default 5 s.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Silence after which a node counts as gone: its pending client results fail and its connections are
    /// forgotten. Must be longer than <see cref="HeartbeatInterval"/>. Default 10 s.</summary>
    public TimeSpan HeartbeatTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long adding/removing a connection held by another node to/from a group waits for that node's
    /// acknowledgement before throwing <see cref="TimeoutException"/>. Default 10 s.</summary>
    public TimeSpan AckTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Most packets waiting to be published (the outbox) while Redis is unreachable; a send into a full outbox
    /// waits for room (back-pressure). Default 10 000.</summary>
    public int OutboxCapacity { get; set; } = 10_000;

    /// <summary>How long a send may wait in the outbox (Redis unreachable, or the outbox full) before it fails with
    /// <see cref="RedisStreamsPublishException"/>; such a packet is never published. A packet already handed to Redis
    /// is retried until Redis answers. Default 30 s.</summary>
    public TimeSpan PublishTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a node keeps what it published, to publish it again when Redis is found restarted without its
    /// data (receivers drop what they already had). Default 30 s.</summary>
    public TimeSpan ReplayWindow { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long one blocking XREAD waits for new entries before it is issued again. Must be shorter than the
    /// reader connection's timeout. Default 1 s.</summary>
    public TimeSpan ReadBlockTime { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Read lag (age of the entry being processed) above which the health check reports Degraded. Default 5 s.</summary>
    public TimeSpan HealthyReadLag { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Connection-state recovery across servers (opt-in). When on, each connection that asks for it (through
    /// the client helper: <c>rs-session</c> in the query string or the <c>X-RedisStreams-Session</c> header) gets a
    /// session kept in Redis while it lives and for <see cref="MaxDisconnectionDuration"/> after it drops. Every message
    /// the backplane delivers then carries its stream position as one extra, last argument, which the client helper
    /// strips and remembers; a client that reconnects to any server with its session and position gets its user and
    /// groups back and every message it missed, in order and once, or is told plainly that it was not recovered.
    /// Default false.</summary>
    public bool ConnectionStateRecovery { get; set; }

    /// <summary>How long a dropped connection's session stays recoverable (with <see cref="ConnectionStateRecovery"/>).
    /// At most one hour (the lifetime of a dead server's inbox). Default 2 minutes.</summary>
    public TimeSpan MaxDisconnectionDuration { get; set; } = TimeSpan.FromMinutes(2);
}
