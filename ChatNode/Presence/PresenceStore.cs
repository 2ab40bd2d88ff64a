using System.Collections.Concurrent;
using StackExchange.Redis;

namespace ChatNode.Presence;

/// <summary>
/// Who is online across all nodes: one sorted set in Redis (<see cref="ChatKeys.Presence"/>), one member per connection
/// (<c>node|connectionId|user</c>), scored by the time its node last vouched for it. Each node adds its connections
/// when they connect, removes them when they leave, and refreshes their scores every <see cref="RefreshInterval"/>;
/// a member older than <see cref="Lifetime"/> belongs to a node that died without a goodbye and is dropped. Redis
/// commands: ZADD, ZREM, ZRANGEBYSCORE, ZREMRANGEBYSCORE.
/// </summary>
internal sealed class PresenceStore(IConnectionMultiplexer redis, ChatKeys keys, ChatNodeIdentity node, TimeProvider time)
{
    /// <summary>How often a node refreshes its connections' entries.</summary>
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(5);

    /// <summary>An entry not refreshed for this long is gone (its node died).</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromSeconds(15);

    private readonly ConcurrentDictionary<string, string> _local = new();

    /// <summary>A connection of <paramref name="user"/> on this node. Never waits for Redis (a later refresh retries).</summary>
    public void Add(string connectionId, string user)
    {
        var member = Member(connectionId, user);
        _local[connectionId] = member;
        redis.GetDatabase().SortedSetAdd(keys.Presence, member, Now(), CommandFlags.FireAndForget);
    }

    /// <summary>The connection left this node.</summary>
    public void Remove(string connectionId)
    {
        if (_local.TryRemove(connectionId, out var member))
        {
            redis.GetDatabase().SortedSetRemove(keys.Presence, member, CommandFlags.FireAndForget);
        }
    }

    /// <summary>Refreshes this node's entries and drops the expired ones (of nodes that died).</summary>
    public async Task RefreshAsync()
    {
        var db = redis.GetDatabase();
        var now = Now();
        var members = _local.Values.Select(m => new SortedSetEntry(m, now)).ToArray();
        if (members.Length > 0)
        {
            await db.SortedSetAddAsync(keys.Presence, members);
        }

        await db.SortedSetRemoveRangeByScoreAsync(keys.Presence, double.NegativeInfinity, now - Lifetime.TotalMilliseconds);
    }

    /// <summary>Every user online on any node, with the nodes it is connected to, by name.</summary>
    public async Task<IReadOnlyList<OnlineUser>> ListAsync()
    {
        var members = await redis.GetDatabase().SortedSetRangeByScoreAsync(keys.Presence, Now() - Lifetime.TotalMilliseconds, double.PositiveInfinity);
        return [.. members
            .Select(m => ((string?)m ?? "").Split('|', 3))
            .Where(parts => parts.Length == 3)
            .GroupBy(parts => parts[2], StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.OrdinalIgnoreCase)
            .Select(g => new OnlineUser(g.Key, [.. g.Select(parts => parts[0]).Distinct().Order(StringComparer.Ordinal)]))];
    }

    private string Member(string connectionId, string user) => node.Name + "|" + connectionId + "|" + user;

    private double Now() => time.GetUtcNow().ToUnixTimeMilliseconds();

}

/// <summary>A user online somewhere: its name and the nodes its connections are on.</summary>
/// <param name="User">The user id.</param>
/// <param name="Nodes">The nodes holding its connections.</param>
internal sealed record OnlineUser(string User, IReadOnlyList<string> Nodes);

/// <summary>Refreshes this node's presence entries every <see cref="PresenceStore.RefreshInterval"/>.</summary>
internal sealed partial class PresenceRefresher(PresenceStore presence, ILogger<PresenceRefresher> logger) : BackgroundService
{
    [LoggerMessage(Level = LogLevel.Warning, Message = "Presence refresh failed (Redis unreachable?); retried at the next tick.")]
    private static partial void RefreshFailed(ILogger logger, Exception exception);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(PresenceStore.RefreshInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await presence.RefreshAsync();
            }
            // Any failure (RedisConnectionException, RedisTimeoutException, which is a TimeoutException, …) waits for the
            // next tick: an exception out of a BackgroundService stops the whole host.
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                RefreshFailed(logger, ex);
            }
        }
    }
}
