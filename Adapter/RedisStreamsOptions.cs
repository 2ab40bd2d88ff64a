using StackExchange.Redis;

namespace SignalR.RedisStreams;

/// <summary>Options of the Redis Streams SignalR backplane.</summary>
public sealed class RedisStreamsOptions
{
    /// <summary>Redis connection settings. When null (and no <see cref="ConnectionFactory"/> is set), the
    /// <see cref="IConnectionMultiplexer"/> registered in DI is used (what Aspire's <c>AddRedisClient</c> registers),
    /// else <c>localhost:6379</c>.</summary>
    public ConfigurationOptions? Configuration { get; set; }

    /// <summary>Creates the Redis connection; overrides <see cref="Configuration"/>. The writer passed in receives
    /// the multiplexer's own log.</summary>
    public Func<TextWriter, Task<IConnectionMultiplexer>>? ConnectionFactory { get; set; }

    /// <summary>The one stream all hubs share. Default <c>"signalr"</c>.</summary>
    public string StreamName { get; set; } = "signalr";

    /// <summary>Prefix of every key this backplane touches, so that several apps can share a Redis. Default empty.</summary>
    public string KeyPrefix { get; set; } = "";

    /// <summary>Approximate (<c>XADD MAXLEN ~</c>) bound of the stream. Default 10 000.</summary>
    public int MaxLength { get; set; } = 10_000;

    /// <summary>Entries read per XREAD. Default 100.</summary>
    public int ReadCount { get; set; } = 100;

    /// <summary>How often a node announces itself. Default 5 s.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Silence after which a node counts as gone. Default 10 s; must exceed <see cref="HeartbeatInterval"/>.</summary>
    public TimeSpan HeartbeatTimeout { get; set; } = TimeSpan.FromSeconds(10);
}
