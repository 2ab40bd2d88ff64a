using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using SignalR.RedisStreams.Internal;

namespace SignalR.RedisStreams;

/// <summary>
/// A <see cref="HubLifetimeManager{THub}"/> that forwards every packet between servers through Redis streams: one
/// shared stream every server reads, and one inbox stream per server for packets addressed to that server.
/// Register it with <c>services.AddSignalR().AddRedisStreams(...)</c>.
/// </summary>
/// <typeparam name="THub">The hub.</typeparam>
public sealed class RedisStreamsHubLifetimeManager<THub> : HubLifetimeManager<THub>, IHubManager, IRecoverableHub, IDisposable where THub : Hub
{
    private static readonly string HubName = typeof(THub).FullName ?? typeof(THub).Name;

    private readonly BackplaneNode _node;
    private readonly ILogger _logger;
    private readonly IHubProtocol[] _protocols;
    private readonly ConcurrentDictionary<string, HubConnectionContext> _connections = new(StringComparer.Ordinal);
    private readonly LocalIndex _groups = new();
    private readonly LocalIndex _users = new();
    private readonly ClientResultsManager _clientResults;
    private readonly ConnectionRecovery? _recovery;
    private readonly Func<StreamEntry, ValueTask<int>> _deliver;

    /// <summary>Created by DI; use <c>AddRedisStreams(...)</c>.</summary>
    public RedisStreamsHubLifetimeManager(
        ILogger<RedisStreamsHubLifetimeManager<THub>> logger,
        IHubProtocolResolver hubProtocolResolver,
        IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(hubProtocolResolver);
        ArgumentNullException.ThrowIfNull(services);
        _logger = logger;
        _node = services.GetRequiredService<BackplaneNode>();
        var supported = services.GetService<IOptions<HubOptions<THub>>>()?.Value.SupportedProtocols
            ?? services.GetService<IOptions<HubOptions>>()?.Value.SupportedProtocols;
        _protocols = hubProtocolResolver.AllProtocols
            .Where(p => supported is null || supported.Contains(p.Name, StringComparer.OrdinalIgnoreCase))
            .ToArray();
        _clientResults = new ClientResultsManager(_node.NodeId, hubProtocolResolver);
        _deliver = Deliver;
        if (_node.Options.ConnectionStateRecovery)
        {
            _recovery = new ConnectionRecovery(_node, HubName, _logger);
        }
        _node.Register(HubName, this);
    }

    /// <inheritdoc />
    /// <remarks>Completes only once this node reads the stream, so that the connection cannot miss a message sent
    /// by another server after it connected. While Redis is unreachable that waits, at most
    /// <see cref="RedisStreamsOptions.PublishTimeout"/>, then fails (SignalR closes the connection with an error).</remarks>
    public override async Task OnConnectedAsync(HubConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        await _node.WhenReadingAsync(connection.ConnectionAborted);
        if (_recovery is { } recovery)
        {
            await recovery.ConnectAsync(this, connection);
        }
        else
        {
            AddLocal(connection);
        }
        await _node.Registry.AddAsync(connection.ConnectionId);
    }

    /// <summary>The connection is live here: sends reach it. With recovery on, called under the recovery's cut.</summary>
    private void AddLocal(HubConnectionContext connection)
    {
        _connections[connection.ConnectionId] = connection;
        if (connection.UserIdentifier is { } user)
        {
            _users.Add(user, connection);
        }
    }

    /// <inheritdoc />
    public override async Task OnDisconnectedAsync(HubConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        _recovery?.Disconnected(connection.ConnectionId);
        _connections.TryRemove(connection.ConnectionId, out _);
        _groups.RemoveEverywhere(connection);
        if (connection.UserIdentifier is { } user)
        {
            _users.Remove(user, connection);
        }

        if (_clientResults.ConnectionLeft(connection.ConnectionId) is { } orphans)
        {
            foreach (var (invocationId, origin) in orphans)
            {
                await TryPublishResultAsync(origin, invocationId, ResultStatus.ConnectionDisconnected, "", default);
            }
        }
        await _node.Registry.RemoveAsync(connection.ConnectionId);
    }

    // ---------------------------------------------------------------- sends: everything but a local single target goes through the stream

    /// <inheritdoc />
    public override Task SendAllAsync(string methodName, object?[] args, CancellationToken cancellationToken = default)
        => PublishAsync(new StreamEntry { Kind = EntryKind.All, Node = _node.NodeId, Hub = HubName, Messages = Serialize(methodName, args) }, cancellationToken);

    /// <inheritdoc />
    public override Task SendAllExceptAsync(string methodName, object?[] args, IReadOnlyList<string> excludedConnectionIds, CancellationToken cancellationToken = default)
        => PublishAsync(new StreamEntry
        {
            Kind = EntryKind.All, Node = _node.NodeId, Hub = HubName, Excluded = excludedConnectionIds ?? [], Messages = Serialize(methodName, args),
        }, cancellationToken);

    /// <inheritdoc />
    public override Task SendConnectionAsync(string connectionId, string methodName, object?[] args, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connectionId);
        if (_recovery is null && _connections.ContainsKey(connectionId))
        {
            return SendConnectionsAsync([connectionId], methodName, args, cancellationToken);
        }
        // A connection of another node (the common case of a direct send): straight to the publisher, with no async
        // frame, target list or enumerator of its own.
        return PublishAsync(new StreamEntry
        {
            Kind = EntryKind.Connections, Node = _node.NodeId, Hub = HubName, Targets = [connectionId], Messages = Serialize(methodName, args),
        }, cancellationToken);
    }

    /// <inheritdoc />
    public override async Task SendConnectionsAsync(IReadOnlyList<string> connectionIds, string methodName, object?[] args, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connectionIds);
        var message = Invocation(methodName, args);
        SerializedHubMessage? serialized = null; // serialized once per protocol, however many local targets
        List<string>? remote = null;
        for (var i = 0; i < connectionIds.Count; i++)
        {
            var id = connectionIds[i];
            // With recovery on, a local target too gets the packet through the stream: it needs a position.
            if (_recovery is null && _connections.TryGetValue(id, out var local))
            {
                await WriteAsync(local, serialized ??= new SerializedHubMessage(message), cancellationToken);
            }
            else
            {
                (remote ??= []).Add(id);
            }
        }
        if (remote is not null)
        {
            await PublishAsync(new StreamEntry
            {
                Kind = EntryKind.Connections, Node = _node.NodeId, Hub = HubName, Targets = remote, Messages = Serialize(message),
            }, cancellationToken);
        }
    }

    /// <inheritdoc />
    public override Task SendGroupAsync(string groupName, string methodName, object?[] args, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(groupName);
        return SendGroupExceptAsync(groupName, methodName, args, [], cancellationToken);
    }

    /// <inheritdoc />
    public override Task SendGroupsAsync(IReadOnlyList<string> groupNames, string methodName, object?[] args, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(groupNames);
        return PublishAsync(new StreamEntry
        {
            Kind = EntryKind.Groups, Node = _node.NodeId, Hub = HubName, Targets = groupNames, Messages = Serialize(methodName, args),
        }, cancellationToken);
    }

    /// <inheritdoc />
    public override Task SendGroupExceptAsync(string groupName, string methodName, object?[] args, IReadOnlyList<string> excludedConnectionIds, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(groupName);
        return PublishAsync(new StreamEntry
        {
            Kind = EntryKind.Groups, Node = _node.NodeId, Hub = HubName, Targets = [groupName], Excluded = excludedConnectionIds ?? [],
            Messages = Serialize(methodName, args),
        }, cancellationToken);
    }

    /// <inheritdoc />
    public override Task SendUserAsync(string userId, string methodName, object?[] args, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(userId);
        return SendUsersAsync([userId], methodName, args, cancellationToken);
    }

    /// <inheritdoc />
    public override Task SendUsersAsync(IReadOnlyList<string> userIds, string methodName, object?[] args, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(userIds);
        return PublishAsync(new StreamEntry
        {
            Kind = EntryKind.Users, Node = _node.NodeId, Hub = HubName, Targets = userIds, Messages = Serialize(methodName, args),
        }, cancellationToken);
    }

    // ---------------------------------------------------------------- groups

    /// <inheritdoc />
    public override Task AddToGroupAsync(string connectionId, string groupName, CancellationToken cancellationToken = default)
        => ChangeGroupAsync(connectionId, groupName, GroupAction.Add, cancellationToken);

    /// <inheritdoc />
    public override Task RemoveFromGroupAsync(string connectionId, string groupName, CancellationToken cancellationToken = default)
        => ChangeGroupAsync(connectionId, groupName, GroupAction.Remove, cancellationToken);

    private async Task ChangeGroupAsync(string connectionId, string groupName, GroupAction action, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connectionId);
        ArgumentNullException.ThrowIfNull(groupName);
        if (_connections.TryGetValue(connectionId, out var local))
        {
            if (_recovery is { } recovery)
            {
                await recovery.ChangeGroupAsync(local, groupName, action, ApplyGroupChange, at: null);
            }
            else
            {
                ApplyGroupChange(local, groupName, action);
            }
            return;
        }

        var owner = await _node.Registry.FindOwnerAsync(connectionId);
        if (owner is null || owner == _node.NodeId)
        {
            return; // no live node holds this connection: nothing to change (as for a local connection that left)
        }

        _node.Membership.Expect(owner);
        var (ackId, acknowledged) = _node.Acks.Create(owner);
        try
        {
            await PublishAsync(new StreamEntry
            {
                Kind = EntryKind.GroupCommand, Node = _node.NodeId, Hub = HubName, TargetNode = owner,
                ConnectionId = connectionId, Group = groupName, Action = action, AckId = ackId,
            }, cancellationToken);
            await acknowledged.WaitAsync(_node.Options.AckTimeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException(
                $"Node '{owner}' did not acknowledge {(action == GroupAction.Add ? "adding" : "removing")} connection '{connectionId}' " +
                $"{(action == GroupAction.Add ? "to" : "from")} group '{groupName}' within {_node.Options.AckTimeout} (RedisStreamsOptions.AckTimeout).");
        }
        finally
        {
            _node.Acks.Forget(ackId);
        }
    }

    private void ApplyGroupChange(HubConnectionContext connection, string groupName, GroupAction action)
    {
        if (action == GroupAction.Add)
        {
            _groups.Add(groupName, connection);
        }
        else
        {
            _groups.Remove(groupName, connection);
        }
    }

    // ---------------------------------------------------------------- client results

    /// <inheritdoc />
    public override async Task<T> InvokeConnectionAsync<T>(string connectionId, string methodName, object?[] args, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connectionId);
        var invocationId = _clientResults.NewInvocationId();
        var message = new InvocationMessage(invocationId, methodName, args);
        PendingInvocation<T> pending;

        if (_connections.TryGetValue(connectionId, out var local))
        {
            pending = _clientResults.Add<T>(invocationId, connectionId, node: "", cancellationToken);
            try
            {
                await WriteAsync(local, new SerializedHubMessage(message), cancellationToken);
            }
            catch
            {
                _clientResults.Remove(invocationId);
                throw;
            }
        }
        else
        {
            var owner = await _node.Registry.FindOwnerAsync(connectionId);
            if (owner is null || owner == _node.NodeId)
            {
                throw new IOException($"Connection '{connectionId}' does not exist.");
            }
            pending = _clientResults.Add<T>(invocationId, connectionId, owner, cancellationToken);
            _node.Membership.Expect(owner);
            try
            {
                await PublishAsync(new StreamEntry
                {
                    Kind = EntryKind.Invoke, Node = _node.NodeId, Hub = HubName, TargetNode = owner,
                    ConnectionId = connectionId, InvocationId = invocationId, Messages = Serialize(message),
                }, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // The caller's token fired while the invocation was on its way (the target may even have it by now,
                // since another node can read the entry before this node hears its append's reply). The pending
                // invocation watches the same token and fails it as SignalR does: HubException, not a bare cancel.
            }
            catch
            {
                _clientResults.Remove(invocationId);
                throw;
            }
        }

        return await pending.Task;
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The invocation is pending for another connection; it stays pending.</exception>
    public override async Task SetConnectionResultAsync(string connectionId, CompletionMessage result)
    {
        ArgumentNullException.ThrowIfNull(connectionId);
        ArgumentNullException.ThrowIfNull(result);
        if (_clientResults.TryComplete(connectionId, result))
        {
            return;
        }
        var invocationId = result.InvocationId ?? "";
        if (_clientResults.TryTakeProxied(connectionId, invocationId, out var origin) && _connections.TryGetValue(connectionId, out var connection))
        {
            // Send the client's completion, as it encoded it, to the node that is waiting for it.
            var bytes = connection.Protocol.GetMessageBytes(result);
            await TryPublishResultAsync(origin, invocationId, ResultStatus.Completed, connection.Protocol.Name, bytes);
            return;
        }
        Log.UnknownInvocation(_logger, invocationId);
    }

    /// <inheritdoc />
    public override bool TryGetReturnType(string invocationId, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Type? type)
        => _clientResults.TryGetReturnType(invocationId, out type);

    private async Task TryPublishResultAsync(string origin, string invocationId, ResultStatus status, string protocol, ReadOnlyMemory<byte> payload)
    {
        try
        {
            await PublishAsync(ResultEntry(origin, invocationId, status, protocol, payload), CancellationToken.None);
        }
        catch (RedisStreamsPublishException ex)
        {
            Log.DispatchFailed(_logger, ex, invocationId, EntryKind.Result);
        }
    }

    private StreamEntry ResultEntry(string origin, string invocationId, ResultStatus status, string protocol, ReadOnlyMemory<byte> payload)
        => new()
        {
            Kind = EntryKind.Result, Node = _node.NodeId, Hub = HubName, TargetNode = origin,
            InvocationId = invocationId, Status = status, Protocol = protocol, Payload = payload,
        };

    // ---------------------------------------------------------------- receiving

    ValueTask<int> IHubManager.DispatchAsync(StreamEntry entry, Activity? activity, CoalescedWrites writes)
    {
        if (_recovery is { } recovery)
        {
            // With recovery on, each write carries its own position and is written as it is (not gathered).
            return entry.Kind is EntryKind.All or EntryKind.Connections or EntryKind.Groups or EntryKind.Users
                ? recovery.DispatchAtCut(entry, _deliver)
                : Deliver(entry, writes: null);
        }
        return Deliver(entry, writes);
    }

    private ValueTask<int> Deliver(StreamEntry entry) => Deliver(entry, writes: null);

    /// <summary>Delivers an entry to this node's connections; with <paramref name="writes"/>, its writes are gathered
    /// there (the reader writes them out after the XREAD reply), else written at once.</summary>
    private ValueTask<int> Deliver(StreamEntry entry, CoalescedWrites? writes)
    {
        switch (entry.Kind)
        {
            case EntryKind.All:
                return WriteToAll(entry, writes);
            case EntryKind.Connections:
                return WriteToConnections(entry, writes);
            case EntryKind.Groups:
                return WriteTo(_groups.Members(entry.Targets), entry, writes);
            case EntryKind.Users:
                return WriteTo(_users.Members(entry.Targets), entry, writes);
            case EntryKind.GroupCommand:
                if (_connections.TryGetValue(entry.ConnectionId, out var member))
                {
                    if (_recovery is { } recovery)
                    {
                        // The command's own position is where the change takes effect for this node's deliveries.
                        _ = recovery.ChangeGroupAsync(member, entry.Group, entry.Action, ApplyGroupChange, at: entry.Position);
                    }
                    else
                    {
                        ApplyGroupChange(member, entry.Group, entry.Action);
                    }
                }
                _node.PublishInBackground(new StreamEntry
                {
                    Kind = EntryKind.Ack, Node = _node.NodeId, Hub = HubName, TargetNode = entry.Node, AckId = entry.AckId,
                });
                return new ValueTask<int>(0);
            case EntryKind.Invoke:
                return InvokeLocalAsync(entry, writes);
            case EntryKind.Result:
                if (!_clientResults.CompleteFromRemote(entry.InvocationId, entry.Status, entry.Protocol, entry.Payload))
                {
                    Log.UnknownInvocation(_logger, entry.InvocationId);
                }
                Activity.Current?.SetTag("signalr.invocation_id", entry.InvocationId);
                return new ValueTask<int>(0);
            default:
                return new ValueTask<int>(0);
        }
    }

    private async ValueTask<int> InvokeLocalAsync(StreamEntry entry, CoalescedWrites? writes)
    {
        if (_connections.TryGetValue(entry.ConnectionId, out var target))
        {
            _clientResults.AddProxied(entry.InvocationId, entry.Node, entry.ConnectionId);
            var invocation = new SerializedHubMessage(entry.Messages);
            if (writes is not null)
            {
                // After what the same reply wrote to the connection before it, as written one by one.
                writes.Add(target, invocation);
            }
            else
            {
                await WriteAsync(target, invocation, CancellationToken.None);
            }
            return 1;
        }
        _node.PublishInBackground(ResultEntry(entry.Node, entry.InvocationId, ResultStatus.ConnectionNotFound, "", default));
        return 0;
    }

    /// <summary>Writes one entry's message to local connections: serialized once per protocol for all of them, the
    /// excluded ones skipped, writes that complete at once not awaited one by one.</summary>
    private struct FanOut(StreamEntry entry, CoalescedWrites? writes)
    {
        private SerializedHubMessage? _message;
        private List<Task>? _pending;

        public int Count { get; private set; }

        public void Write(RedisStreamsHubLifetimeManager<THub> manager, HubConnectionContext connection)
        {
            var excluded = entry.Excluded;
            if (excluded.Count > 0 && excluded.Contains(connection.ConnectionId))
            {
                return;
            }
            _message ??= manager._recovery is null ? new SerializedHubMessage(entry.Messages) : ConnectionRecovery.Positioned(entry);
            Count++;
            if (writes is not null)
            {
                writes.Add(connection, _message);
                return;
            }
            var write = manager.WriteAsync(connection, _message, CancellationToken.None);
            if (!write.IsCompletedSuccessfully)
            {
                (_pending ??= []).Add(write.AsTask());
            }
        }

        public readonly ValueTask<int> CompleteAsync()
            => _pending is null ? new ValueTask<int>(Count) : WaitAsync(_pending, Count);

        private static async ValueTask<int> WaitAsync(List<Task> pending, int count)
        {
            await Task.WhenAll(pending);
            return count;
        }
    }

    private ValueTask<int> WriteToAll(StreamEntry entry, CoalescedWrites? writes)
    {
        var fan = new FanOut(entry, writes);
        foreach (var (_, connection) in _connections) // the dictionary's own enumerator: no lock, no copy
        {
            fan.Write(this, connection);
        }
        return fan.CompleteAsync();
    }

    private ValueTask<int> WriteToConnections(StreamEntry entry, CoalescedWrites? writes)
    {
        var fan = new FanOut(entry, writes);
        var targets = entry.Targets;
        for (var i = 0; i < targets.Count; i++)
        {
            if (_connections.TryGetValue(targets[i], out var connection))
            {
                fan.Write(this, connection);
            }
        }
        return fan.CompleteAsync();
    }

    private ValueTask<int> WriteTo(HubConnectionContext[] members, StreamEntry entry, CoalescedWrites? writes)
    {
        if (members.Length == 0)
        {
            return new ValueTask<int>(0);
        }
        var fan = new FanOut(entry, writes);
        // Walked by index: no enumerator object per dispatch.
        for (var i = 0; i < members.Length; i++)
        {
            fan.Write(this, members[i]);
        }
        return fan.CompleteAsync();
    }

    private ValueTask WriteAsync(HubConnectionContext connection, SerializedHubMessage message, CancellationToken cancellationToken)
        => CoalescedWrites.WriteLoggedAsync(connection, message, _logger, cancellationToken);

    void IHubManager.NodeGone(string nodeId) => _clientResults.NodeGone(nodeId);

    IEnumerable<string> IHubManager.LocalConnectionIds => _connections.Keys;

    // ---------------------------------------------------------------- helpers

    private Task PublishAsync(StreamEntry entry, CancellationToken cancellationToken) => _node.PublishAsync(entry, cancellationToken);

    /// <summary>A send's message, serialized per protocol.</summary>
    private SerializedMessage[] Serialize(string methodName, object?[] args) => Serialize(Invocation(methodName, args));

    /// <summary>A send's message; with recovery on, with the position placeholder in a header (each receiving node
    /// writes the entry's position over it; clients without the recovery helper ignore the header).</summary>
    private InvocationMessage Invocation(string methodName, object?[] args)
        => _recovery is null ? new InvocationMessage(methodName, args) : new InvocationMessage(methodName, args) { Headers = ConnectionRecovery.PlaceholderHeaders };

    private SerializedMessage[] Serialize(HubMessage message)
    {
        var result = new SerializedMessage[_protocols.Length];
        for (var i = 0; i < result.Length; i++)
        {
            result[i] = new SerializedMessage(_protocols[i].Name, _protocols[i].GetMessageBytes(message));
        }
        return result;
    }

    /// <summary>Leaves the node; the node itself is stopped by the host.</summary>
    public void Dispose()
    {
        _node.Unregister(HubName);
        _recovery?.Dispose();
    }

    // ---------------------------------------------------------------- what connection-state recovery needs of the manager

    void IRecoverableHub.AddLocal(HubConnectionContext connection) => AddLocal(connection);

    void IRecoverableHub.AddToLocalGroup(HubConnectionContext connection, string groupName) => _groups.Add(groupName, connection);

    ValueTask IRecoverableHub.WriteAsync(HubConnectionContext connection, SerializedHubMessage message) => WriteAsync(connection, message, CancellationToken.None);
}
