using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// On a Redis Cluster, makes each of the node's connections find the new owner of its streams' slots after a failover.
/// StackExchange.Redis routes a command by its key's slot to the master it last knew; after a replica was promoted, the
/// old master is down (SIGKILL, SIGSTOP) or a replica itself (<c>CLUSTER FAILOVER</c>), and a command the client knows
/// must go to a master then fails on the client side (or waits in the old master's backlog until it times out), never
/// reaching a server that would answer <c>MOVED</c>, until the client reloads the cluster's topology on its own (which
/// can take a minute). So, twice a second, this checks for each connection whether a stream's slot maps to a server
/// that is disconnected or a replica, and if so reloads the topology (<c>CLUSTER NODES</c>, at most once a second per
/// connection). When the reload gives the slot another owner, <paramref name="moved"/> is raised: what the node sent to
/// the old master and still waits for is sent again (<see cref="TopologySignal"/>). Nothing is sent to Redis while the
/// map is right; nothing at all on a single Redis.
/// </summary>
/// <remarks>With the slot's server disconnected, <c>GetServer(key)</c> gives any connected server instead: the server is
/// then taken from the cluster configuration the client loaded (<see cref="Owner"/>).</remarks>
internal sealed class ClusterTopologyWatch(
    IReadOnlyList<(string Name, Func<IConnectionMultiplexer> Connection, RedisKey[] Keys)> connections, TopologySignal moved, ILogger logger)
{
    private static readonly TimeSpan CheckInterval = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan MinReloadInterval = TimeSpan.FromSeconds(1);

    private readonly long[] _lastReload = new long[connections.Count];

    public async Task RunAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(CheckInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping))
            {
                for (var i = 0; i < connections.Count; i++)
                {
                    await CheckAsync(i);
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    private async Task CheckAsync(int index)
    {
        var (name, connection, keys) = connections[index];
        IConnectionMultiplexer multiplexer;
        try
        {
            multiplexer = connection();
        }
        catch (InvalidOperationException)
        {
            return; // not connected yet
        }

        foreach (var key in keys)
        {
            EndPoint owner;
            IServer ownerServer;
            try
            {
                var mapped = multiplexer.GetServer(key);
                if (mapped.ServerType != ServerType.Cluster)
                {
                    continue;
                }
                moved.OnCluster();
                (owner, ownerServer) = Owner(multiplexer, mapped, key);
            }
            catch (Exception ex) when (ex is RedisException or InvalidOperationException or NotSupportedException or ArgumentException)
            {
                continue;
            }
            if (ownerServer.IsConnected && !ownerServer.IsReplica)
            {
                continue;
            }
            if (_lastReload[index] != 0 && Stopwatch.GetElapsedTime(_lastReload[index]) < MinReloadInterval)
            {
                return;
            }
            _lastReload[index] = Stopwatch.GetTimestamp();
            Log.ClusterTopologyStale(logger, key.ToString(), owner.ToString() ?? "?", ownerServer.IsConnected ? "a replica now" : "not connected", name);
            try
            {
                await multiplexer.ConfigureAsync();
                var (now, _) = Owner(multiplexer, multiplexer.GetServer(key), key);
                if (!Equals(now, owner))
                {
                    Log.ClusterSlotMoved(logger, key.ToString(), owner.ToString() ?? "?", now.ToString() ?? "?", name);
                    moved.Raise();
                }
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException or InvalidOperationException or NotSupportedException or ArgumentException)
            {
                Log.ClusterTopologyReloadFailed(logger, ex, name);
            }
            return;
        }
    }

    /// <summary>The server the client sends <paramref name="key"/>'s commands to: the one it maps the slot to
    /// (<paramref name="server"/>, from <c>GetServer(key)</c>), or, when that one is disconnected (then <c>GetServer</c>
    /// gives any connected server instead), the slot's owner in the cluster configuration the client last loaded.</summary>
    private static (EndPoint EndPoint, IServer Server) Owner(IConnectionMultiplexer multiplexer, IServer server, RedisKey key)
    {
        if (server.ClusterConfiguration?.GetBySlot(key)?.EndPoint is { } configured && !Equals(configured, server.EndPoint))
        {
            var owner = multiplexer.GetServer(configured);
            if (!owner.IsConnected)
            {
                return (configured, owner);
            }
        }
        return (server.EndPoint, server);
    }
}
