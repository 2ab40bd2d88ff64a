using SignalR.RedisStreams;

namespace AppHost.Redis;

/// <summary>
/// The Redis ACL user the chat nodes connect as (the local redis-server creates it at start with <c>--user</c>; the
/// default user, with the generated <c>--requirepass</c> password, is kept for the AppHost's own health check and fault
/// commands). Its rights are the backplane's, exactly as the adapter lists them (<see cref="RedisStreamsAcl"/>, for the
/// chat's stream), plus <see cref="ChatNodeRules"/>: whatever the chat node itself does with Redis. A chat feature that
/// stores something in Redis adds its rights to <see cref="ChatNodeRules"/> (its own key pattern, its commands), and
/// <c>tests/AppHost.Tests/LeastPrivilegeAppTests</c> fails if Redis refuses the chat nodes anything.
/// </summary>
public static class ChatRedisAcl
{
    /// <summary>The ACL user of the chat nodes.</summary>
    public const string UserName = "chatnode";

    /// <summary>The chat node's rights beyond the backplane's. Its keys sit under the backplane's (<c>{signalr:chat}:</c>),
    /// which the backplane's key pattern already covers; its commands: the Data Protection key ring, a list
    /// (<c>LRANGE</c>, <c>RPUSH</c>), and who is online, a sorted set (<c>ZADD</c>, <c>ZREM</c>, <c>ZRANGEBYSCORE</c>,
    /// <c>ZREMRANGEBYSCORE</c>). Aspire's Redis client only PINGs (its health check), which the backplane's list has.</summary>
    public const string ChatNodeRules = "+lrange +rpush +zadd +zrem +zrangebyscore +zremrangebyscore";

    /// <summary>The backplane's options as the chat node runs them (its defaults: stream <c>signalr</c>, no prefix).</summary>
    public static RedisStreamsOptions BackplaneOptions { get; } = new();

    /// <summary>Every rule of the user, after <c>on &gt;password</c>.</summary>
    public static string Rules => (RedisStreamsAcl.Rules(BackplaneOptions) + " " + ChatNodeRules).Trim();
}
