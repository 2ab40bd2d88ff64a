using System.Collections.Concurrent;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Connection-state recovery for one hub's manager (<see cref="RedisStreamsOptions.ConnectionStateRecovery"/>).
/// <para><b>Positions.</b> Every message the backplane delivers carries its <see cref="DeliveryPosition"/> in a message
/// header (<see cref="PositionMessageHeader"/>), which clients without the helper ignore; the client helper keeps the
/// highest it got.</para>
/// <para><b>Sessions.</b> A connection that asks for it (<c>rs-session=new</c>) gets a session in Redis
/// (<see cref="SessionStore"/>): user, hub, groups with the position each was joined at, and the node that holds it.
/// It is told its secret token and its starting position in a <see cref="ControlMethod"/> message.</para>
/// <para><b>Recovery.</b> A connection that presents a token and a position, on any node, gets its user checked, its
/// groups back, and every packet of its hub that would have reached the old connection after that position (all
/// sends, its groups, its user, its old connection id), read page by page from the shared stream and the old node's
/// inbox. The seam with live traffic is exact: the manager's deliveries take one lock per packet (the cut); the
/// recovering connection is registered under it as pending, which fixes the position the replay reads up to, and
/// every live packet for it after that position is held back and written after the replay, before the connection
/// joins the live path, again under the cut. Anything that makes an exact replay impossible (unknown or expired
/// session, another user, a trimmed position) ends in a plain "not recovered" with the reason and a fresh session.</para>
/// </summary>
internal sealed class ConnectionRecovery : IDisposable
{
    /// <summary>The client method of the session messages: (status, token, position, replayed, reason).</summary>
    public const string ControlMethod = "RedisStreams.Session";
    public const string SessionQuery = "rs-session";
    public const string PositionQuery = "rs-position";
    public const string SessionHeader = "X-RedisStreams-Session";
    public const string PositionHeader = "X-RedisStreams-Position";
    /// <summary>The message header that carries a delivered message's position.</summary>
    public const string PositionMessageHeader = "rs-position";
    private const int PageSize = 100;

    /// <summary>The headers of every message sent with recovery on (read-only: shared by all messages).</summary>
    public static readonly IDictionary<string, string> PlaceholderHeaders =
        new System.Collections.ObjectModel.ReadOnlyDictionary<string, string>(new Dictionary<string, string> { [PositionMessageHeader] = DeliveryPosition.Placeholder });

    private readonly BackplaneNode _node;
    private readonly string _hub;
    private readonly ILogger _logger;
    private readonly SessionStore _store;
    private readonly Lock _cut = new();
    private readonly List<Pending> _pending = [];
    private readonly ConcurrentDictionary<string, string> _tokens = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _disposed = new();
    private DeliveryPosition _last;

    public ConnectionRecovery(BackplaneNode node, string hub, ILogger logger)
    {
        _node = node;
        _hub = hub;
        _logger = logger;
        _store = new SessionStore(node.Keys, node.Options.MaxDisconnectionDuration);
        _ = Background.Run(RefreshLoopAsync);
    }

    // ---------------------------------------------------------------- the live path

    /// <summary>Delivers a packet under the cut, and holds it for the connections being recovered that want it.</summary>
    public ValueTask<int> DispatchAtCut(StreamEntry entry, Func<StreamEntry, ValueTask<int>> deliver)
    {
        lock (_cut)
        {
            _last = entry.Position;
            foreach (var pending in _pending)
            {
                if (pending.Session.Wants(entry, pending.Connection.ConnectionId))
                {
                    pending.Held.Add(entry);
                }
            }
            return deliver(entry);
        }
    }

    /// <summary>The packet's message with its position written over the placeholder, per protocol.</summary>
    public static SerializedHubMessage Positioned(StreamEntry entry)
    {
        var messages = entry.Messages;
        var patched = new SerializedMessage[messages.Count];
        for (var i = 0; i < patched.Length; i++)
        {
            var bytes = entry.Position.Patch(messages[i].Serialized.Span);
            patched[i] = bytes is null ? messages[i] : new SerializedMessage(messages[i].ProtocolName, bytes);
        }
        return new SerializedHubMessage(patched);
    }

    /// <summary>Under the cut: every packet up to here was handled by this node.</summary>
    private DeliveryPosition Cut()
    {
        var processed = _node.Reader.Processed;
        return processed > _last ? processed : _last;
    }

    // ---------------------------------------------------------------- connections

    public async Task ConnectAsync(IRecoverableHub hub, HubConnectionContext connection)
    {
        var (asked, token, positionText) = ReadRequest(connection);
        if (!asked)
        {
            lock (_cut)
            {
                hub.AddLocal(connection);
            }
            return;
        }
        if (token is null or "" or "new")
        {
            await StartFreshAsync(hub, connection, "new", "");
            return;
        }

        string reason;
        if (!SessionStore.IsWellFormed(token))
        {
            reason = "malformed session token";
        }
        else if (!DeliveryPosition.TryParse(positionText, out var from))
        {
            reason = "missing or malformed position";
        }
        else
        {
            try
            {
                var db = await _node.CommandDatabaseAsync();
                var session = await _store.LoadAsync(db, token);
                if (session is null)
                {
                    reason = "session unknown or expired";
                }
                else if (session.Hub != _hub)
                {
                    reason = "session belongs to another hub";
                }
                else if (session.User != connection.UserIdentifier)
                {
                    reason = "session belongs to another user";
                }
                else
                {
                    var replayed = await RecoverAsync(hub, connection, session, from, db);
                    _node.Instruments.Recovered.Add(1);
                    _node.Instruments.Replayed.Add(replayed);
                    Log.SessionRecovered(_logger, connection.ConnectionId, session.ConnectionId, session.Node, replayed);
                    return;
                }
            }
            catch (ReplayTrimmedException)
            {
                reason = "messages after the position were trimmed from the stream";
            }
            catch (TimeoutException)
            {
                reason = "this server did not reach the position in time";
            }
            catch (RedisException ex)
            {
                reason = "Redis error: " + ex.Message;
            }
        }

        _node.Instruments.NotRecovered.Add(1);
        Log.SessionNotRecovered(_logger, connection.ConnectionId, reason);
        await StartFreshAsync(hub, connection, "not-recovered", reason);
    }

    private async Task<int> RecoverAsync(IRecoverableHub hub, HubConnectionContext connection, RecoverySession session, DeliveryPosition from, IDatabase db)
    {
        // The old node may have read further than this one: wait until this node has handled everything up to the
        // client's position, so that nothing up to it reaches the client twice. Heartbeats move every reader on.
        await _node.Reader.WhenProcessedAsync(from, _node.Options.HeartbeatTimeout, connection.ConnectionAborted);

        var pending = new Pending(session, connection);
        DeliveryPosition upTo;
        lock (_cut)
        {
            _pending.Add(pending);
            upTo = Cut();
        }

        var replayed = 0;
        try
        {
            var reader = new ReplayReader(db, [_node.Keys.Stream, _node.Keys.Inbox(session.Node)], _hub, PageSize);
            await reader.EnsureNotTrimmedAsync(from);
            var after = from;
            while (after < upTo)
            {
                var (packets, next) = await reader.ReadPageAsync(after, upTo);
                var writes = new List<Task>(packets.Count);
                foreach (var packet in packets)
                {
                    if (session.Wants(packet, connection.ConnectionId))
                    {
                        writes.Add(hub.WriteAsync(connection, Positioned(packet)).AsTask());
                        replayed++;
                    }
                }
                await Task.WhenAll(writes);
                after = next;
            }
        }
        catch
        {
            lock (_cut)
            {
                _pending.Remove(pending);
            }
            throw;
        }

        var live = new List<Task>();
        lock (_cut)
        {
            _pending.Remove(pending);
            live.Add(hub.WriteAsync(connection, Control("recovered", session.Token, upTo, replayed, "")).AsTask());
            foreach (var held in pending.Held)
            {
                if (held.Position > upTo)
                {
                    live.Add(hub.WriteAsync(connection, Positioned(held)).AsTask());
                }
            }
            hub.AddLocal(connection);
            foreach (var group in session.Groups.Keys)
            {
                hub.AddToLocalGroup(connection, group);
            }
            _tokens[connection.ConnectionId] = session.Token;
        }
        await Task.WhenAll(live);
        try
        {
            await _store.TakeOverAsync(db, session.Token, connection.ConnectionId, _node.NodeId);
        }
        catch (RedisException ex)
        {
            Log.SessionWriteFailed(_logger, ex, connection.ConnectionId);
        }
        return replayed;
    }

    private async Task StartFreshAsync(IRecoverableHub hub, HubConnectionContext connection, string status, string reason)
    {
        var token = SessionStore.NewToken();
        DeliveryPosition at;
        lock (_cut)
        {
            hub.AddLocal(connection);
            at = Cut();
            _tokens[connection.ConnectionId] = token;
        }
        try
        {
            var db = await _node.CommandDatabaseAsync();
            await _store.CreateAsync(db, token, _hub, connection.UserIdentifier, connection.ConnectionId, _node.NodeId);
        }
        catch (RedisException ex)
        {
            // The client is still told its token: a later recovery then reports "session unknown", never a silent gap.
            Log.SessionWriteFailed(_logger, ex, connection.ConnectionId);
        }
        await hub.WriteAsync(connection, Control(status, token, at, 0, reason));
    }

    /// <summary>A group change of a local connection, under the cut, written to its session. <paramref name="at"/>:
    /// the position where it takes effect (a group command's own), else the cut.</summary>
    public async Task ChangeGroupAsync(
        HubConnectionContext connection, string group, GroupAction action, Action<HubConnectionContext, string, GroupAction> apply, DeliveryPosition? at)
    {
        DeliveryPosition position;
        lock (_cut)
        {
            apply(connection, group, action);
            position = at ?? Cut();
        }
        if (!_tokens.TryGetValue(connection.ConnectionId, out var token))
        {
            return;
        }
        try
        {
            var db = await _node.CommandDatabaseAsync();
            await (action == GroupAction.Add ? _store.JoinAsync(db, token, group, position) : _store.LeaveAsync(db, token, group));
        }
        catch (RedisException ex)
        {
            Log.SessionWriteFailed(_logger, ex, connection.ConnectionId);
        }
    }

    public void Disconnected(string connectionId) => _tokens.TryRemove(connectionId, out _);

    private static SerializedHubMessage Control(string status, string token, DeliveryPosition position, int replayed, string reason)
        => new(new InvocationMessage(ControlMethod, [status, token, position.ToString(), replayed, reason]));

    private static (bool Asked, string? Token, string? Position) ReadRequest(HubConnectionContext connection)
    {
        var request = connection.GetHttpContext()?.Request;
        if (request is null)
        {
            return (false, null, null);
        }
        string? token = request.Query.TryGetValue(SessionQuery, out var q) ? q.ToString()
            : request.Headers.TryGetValue(SessionHeader, out var h) ? h.ToString() : null;
        if (token is null)
        {
            return (false, null, null);
        }
        string? position = request.Query.TryGetValue(PositionQuery, out var qp) ? qp.ToString()
            : request.Headers.TryGetValue(PositionHeader, out var hp) ? hp.ToString() : null;
        return (true, token, position);
    }

    // ---------------------------------------------------------------- sessions stay while their connections live

    private async Task RefreshLoopAsync()
    {
        using var timer = new PeriodicTimer(_store.RefreshInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_disposed.Token))
            {
                if (_tokens.IsEmpty)
                {
                    continue;
                }
                try
                {
                    var db = await _node.CommandDatabaseAsync();
                    await _store.RefreshAsync(db, _tokens.Values.ToList());
                }
                catch (Exception ex) when (ex is RedisException or TimeoutException)
                {
                    Log.SessionWriteFailed(_logger, ex, "*");
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public void Dispose()
    {
        _disposed.Cancel();
        _disposed.Dispose();
    }

    private sealed class Pending(RecoverySession session, HubConnectionContext connection)
    {
        public RecoverySession Session { get; } = session;
        public HubConnectionContext Connection { get; } = connection;

        /// <summary>Live packets for it since it became pending (under the cut).</summary>
        public List<StreamEntry> Held { get; } = [];
    }
}
