using System.Collections.Concurrent;
using System.Diagnostics;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>Membership (heartbeats, goodbyes, nodes declared gone), acknowledgements, and the Redis registry of which node holds which connection.</summary>
internal sealed partial class RedisStreamsBackplane
{
    private void Seen(string node)
    {
        var now = Stopwatch.GetTimestamp();
        if (_membersLastSeen.TryAdd(node, now))
        {
            _goneNodes.TryRemove(node, out _);
            if (node != NodeId)
            {
                Log.NodeJoined(_logger, node);
            }
        }
        else
        {
            _membersLastSeen[node] = now;
        }
    }

    /// <summary>After the reader was cut off, nobody could be heard: give every node a fresh timeout.</summary>
    private void ResetMembershipClock()
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var node in _membersLastSeen.Keys)
        {
            _membersLastSeen[node] = now;
        }
    }

    /// <summary>Starts tracking a node we are about to wait on, so that it is declared gone if it never speaks.</summary>
    public void ExpectNode(string node) => _membersLastSeen.TryAdd(node, Stopwatch.GetTimestamp());

    private readonly ConcurrentDictionary<string, bool> _goneNodes = new(StringComparer.Ordinal);

    private void RemoveNode(string node, string reason)
    {
        if (!_membersLastSeen.TryRemove(node, out _))
        {
            return;
        }
        _goneNodes[node] = true;
        Log.NodeGone(_logger, node, reason);
        foreach (var (ackId, ack) in _acks)
        {
            if (ack.Node == node && _acks.TryRemove(ackId, out _))
            {
                ack.Tcs.TrySetException(new IOException($"Node '{node}' went away before acknowledging."));
            }
        }
        foreach (var hub in _hubs.Values)
        {
            hub.OnNodeGone(node);
        }
        _ = ForgetConnectionsOfAsync(node);
    }

    private async Task HeartbeatLoopAsync()
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval);
        try
        {
            await _readerReady.Task.WaitAsync(_stopping.Token);
            do
            {
                try
                {
                    await AppendUnsequencedAsync(EntryKind.Heartbeat);
                    await SampleEntriesBehindAsync();
                }
                catch (Exception ex) when (IsRetryable(ex))
                {
                    Log.HeartbeatFailed(_logger, ex);
                }

                // Only judge others while this node can hear them.
                if (SinceLastRead < _options.ReadBlockTime + TimeSpan.FromSeconds(2))
                {
                    var now = Stopwatch.GetTimestamp();
                    foreach (var (node, lastSeen) in _membersLastSeen)
                    {
                        if (node != NodeId && Stopwatch.GetElapsedTime(lastSeen, now) > _options.HeartbeatTimeout)
                        {
                            RemoveNode(node, $"silent for more than {_options.HeartbeatTimeout}");
                        }
                    }
                }
            }
            while (await timer.WaitForNextTickAsync(_stopping.Token));
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    private async Task SampleEntriesBehindAsync()
    {
        const int Cap = 1000;
        var cursor = _cursor;
        if (cursor.Length == 0)
        {
            return;
        }
        var ahead = await _connection!.GetDatabase().StreamRangeAsync(Keys.Stream, "(" + cursor, "+", count: Cap);
        Interlocked.Exchange(ref _entriesBehind, ahead.Length);
    }

    public (long AckId, Task Acknowledged) CreateAck(string targetNode)
    {
        var id = Interlocked.Increment(ref _nextAckId);
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _acks[id] = (tcs, targetNode);
        return (id, tcs.Task);
    }

    public void ForgetAck(long ackId) => _acks.TryRemove(ackId, out _);

    /// <summary>The command connection, once the node has connected (it connects at host start; a manager used before
    /// that waits for it).</summary>
    private async ValueTask<IDatabase> DatabaseAsync()
    {
        if (_connection is null)
        {
            await EnsureStarted();
        }
        return _connection!.GetDatabase();
    }

    public async Task RegisterConnectionAsync(string connectionId)
    {
        try
        {
            await (await DatabaseAsync()).HashSetAsync(Keys.Connections, connectionId, NodeId);
        }
        catch (Exception ex) when (IsRetryable(ex))
        {
            Log.RegistryFailed(_logger, ex);
        }
    }

    public async Task UnregisterConnectionAsync(string connectionId)
    {
        try
        {
            await (await DatabaseAsync()).HashDeleteAsync(Keys.Connections, connectionId);
        }
        catch (Exception ex) when (IsRetryable(ex))
        {
            Log.RegistryFailed(_logger, ex);
        }
    }

    /// <summary>The node holding the connection, or null when no live node does.</summary>
    public async Task<string?> FindConnectionOwnerAsync(string connectionId)
    {
        var owner = (string?)await (await DatabaseAsync()).HashGetAsync(Keys.Connections, connectionId);
        if (owner is null || _goneNodes.ContainsKey(owner))
        {
            return null;
        }
        return owner;
    }

    private async Task RewriteRegistryAsync()
    {
        try
        {
            var entries = _hubs.Values.SelectMany(h => h.LocalConnectionIds).Select(id => new HashEntry(id, NodeId)).ToArray();
            if (entries.Length > 0)
            {
                await _connection!.GetDatabase().HashSetAsync(Keys.Connections, entries);
            }
        }
        catch (Exception ex) when (IsRetryable(ex))
        {
            Log.RegistryFailed(_logger, ex);
        }
    }

    private async Task ForgetConnectionsOfAsync(string node)
    {
        try
        {
            var db = _connection!.GetDatabase();
            await foreach (var entry in db.HashScanAsync(Keys.Connections, pageSize: 500))
            {
                if (entry.Value == node)
                {
                    await db.HashDeleteAsync(Keys.Connections, entry.Name);
                }
            }
        }
        catch (Exception ex) when (IsRetryable(ex))
        {
            Log.RegistryFailed(_logger, ex);
        }
    }
}
