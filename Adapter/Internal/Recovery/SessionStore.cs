using System.Security.Cryptography;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The sessions of connection-state recovery, in Redis: one hash per session (<see cref="RedisStreamsKeys.Session"/>),
/// written when its connection arrives, changed with its groups, and given a fresh expiry by its node at every
/// <see cref="RefreshInterval"/> while the connection lives. A connection whose node dies therefore stays recoverable
/// for at least <c>MaxDisconnectionDuration</c>: nothing has to be written when a connection ends, which a killed
/// process could not do.
/// </summary>
internal sealed class SessionStore(RedisStreamsKeys keys, TimeSpan maxDisconnection)
{
    private const string HubField = "h";
    private const string UserField = "u";
    private const string ConnectionField = "c";
    private const string NodeField = "n";
    private const string GroupPrefix = "g:";

    /// <summary>How often a node refreshes the expiry of its connections' sessions.</summary>
    public TimeSpan RefreshInterval { get; } = TimeSpan.FromTicks(Math.Clamp(maxDisconnection.Ticks / 4, TimeSpan.FromMilliseconds(250).Ticks, TimeSpan.FromSeconds(15).Ticks));

    /// <summary>The expiry set at each write and refresh: a session outlives its connection's last refresh by at least
    /// <c>MaxDisconnectionDuration</c>.</summary>
    public TimeSpan Expiry => maxDisconnection + RefreshInterval;

    /// <summary>A new secret token: 128 random bits, hex. The connection id is public (other clients can address it),
    /// so it cannot be what proves a session is yours.</summary>
    public static string NewToken() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    /// <summary>Whether a client's token has the shape of ours (anything else is refused before it reaches Redis).</summary>
    public static bool IsWellFormed(string? token)
        => token is { Length: 32 } && token.All(c => c is (>= '0' and <= '9') or (>= 'a' and <= 'f'));

    public async Task CreateAsync(IDatabase db, string token, string hub, string? user, string connectionId, string node)
    {
        var key = keys.Session(token);
        var fields = new List<HashEntry>(4)
        {
            new(HubField, hub), new(ConnectionField, connectionId), new(NodeField, node),
        };
        if (user is not null)
        {
            fields.Add(new(UserField, user));
        }
        var batch = db.CreateBatch();
        var set = batch.HashSetAsync(key, [.. fields]);
        var expire = batch.KeyExpireAsync(key, Expiry);
        batch.Execute();
        await Task.WhenAll(set, expire);
    }

    /// <summary>The session, or null when Redis has none under that token (never existed, expired, or Redis lost it).</summary>
    public async Task<RecoverySession?> LoadAsync(IDatabase db, string token)
    {
        var fields = await db.HashGetAllAsync(keys.Session(token));
        if (fields.Length == 0)
        {
            return null;
        }
        string? hub = null, user = null, connection = null, node = null;
        var groups = new Dictionary<string, DeliveryPosition>(StringComparer.Ordinal);
        foreach (var field in fields)
        {
            var name = field.Name.ToString();
            switch (name)
            {
                case HubField: hub = field.Value.ToString(); break;
                case UserField: user = field.Value.ToString(); break;
                case ConnectionField: connection = field.Value.ToString(); break;
                case NodeField: node = field.Value.ToString(); break;
                default:
                    if (name.StartsWith(GroupPrefix, StringComparison.Ordinal) && DeliveryPosition.TryParse(field.Value.ToString(), out var joined))
                    {
                        groups[name[GroupPrefix.Length..]] = joined;
                    }
                    break;
            }
        }
        return hub is null || connection is null || node is null ? null : new RecoverySession(token, hub, user, connection, node, groups);
    }

    /// <summary>The session now belongs to a new connection on a new node (after a recovery).</summary>
    public async Task TakeOverAsync(IDatabase db, string token, string connectionId, string node)
    {
        var key = keys.Session(token);
        var batch = db.CreateBatch();
        var set = batch.HashSetAsync(key, [new(ConnectionField, connectionId), new(NodeField, node)]);
        var expire = batch.KeyExpireAsync(key, Expiry);
        batch.Execute();
        await Task.WhenAll(set, expire);
    }

    /// <summary>Records a group join; a join of a group the session is already in keeps the earlier position (a client
    /// that joins its rooms again after reconnecting must not shorten what a later replay covers).</summary>
    public Task JoinAsync(IDatabase db, string token, string group, DeliveryPosition at)
        => db.HashSetAsync(keys.Session(token), GroupPrefix + group, at.ToString(), When.NotExists);

    public Task LeaveAsync(IDatabase db, string token, string group)
        => db.HashDeleteAsync(keys.Session(token), GroupPrefix + group);

    /// <summary>Gives every listed session a fresh expiry, in one round trip.</summary>
    public async Task RefreshAsync(IDatabase db, IReadOnlyCollection<string> tokens)
    {
        if (tokens.Count == 0)
        {
            return;
        }
        var batch = db.CreateBatch();
        var pending = new List<Task>(tokens.Count);
        foreach (var token in tokens)
        {
            pending.Add(batch.KeyExpireAsync(keys.Session(token), Expiry));
        }
        batch.Execute();
        await Task.WhenAll(pending);
    }
}
