namespace Benchmarks.Infrastructure;

/// <summary>Which SignalR backplane a cluster uses.</summary>
internal enum Backplane
{
    /// <summary>Ours: <c>AddRedisStreams</c> (one Redis stream, XADD / XREAD).</summary>
    RedisStreams,

    /// <summary>Microsoft's: <c>AddStackExchangeRedis</c> (Redis pub/sub).</summary>
    MicrosoftPubSub,

    /// <summary>No backplane: plain SignalR on one server (the default hub lifetime manager), the ceiling a backplane
    /// can at best reach.</summary>
    None,
}

/// <summary>Display names.</summary>
internal static class BackplaneNames
{
    public static string Short(this Backplane backplane) => backplane switch
    {
        Backplane.RedisStreams => "ours (Redis Streams)",
        Backplane.MicrosoftPubSub => "Microsoft (pub/sub)",
        Backplane.None => "ceiling (1 server, no backplane)",
        _ => backplane.ToString(),
    };
}
