using System.Diagnostics;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// On a Redis Cluster, makes each of the node's connections find the new owner of its streams' slots after a failover.
/// StackExchange.Redis routes a command by its key's slot to the master it last knew; after a replica was promoted, the
/// old master is down (SIGKILL, SIGSTOP) or a replica itself (<c>CLUSTER FAILOVER</c>), and a command the client knows
/// must go to a master then fails on the client side, never reaching a server that would answer <c>MOVED</c>, until the
/// client reloads the cluster's topology on its own (which can take a minute). So, twice a second, this checks for each
/// connection whether a stream's slot maps to a server that is disconnected or a replica, and if so reloads the
/// topology (<c>CLUSTER NODES</c>, at most once a second per connection). Nothing is sent to Redis while the map is
/// right; nothing at all on a single Redis.
/// </summary>
internal sealed class ClusterTopologyWatch(IReadOnlyList<(string Name, Func<IConnectionMultiplexer> Connection, RedisKey[] Keys)> connections, ILogger logger)
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
            IServer server;
            try
            {
                server = multiplexer.GetServer(key);
            }
            catch (Exception ex) when (ex is RedisException or InvalidOperationException or NotSupportedException)
            {
                continue;
            }
            if (server.ServerType != ServerType.Cluster || (server.IsConnected && !server.IsReplica))
            {
                continue;
            }
            if (_lastReload[index] != 0 && Stopwatch.GetElapsedTime(_lastReload[index]) < MinReloadInterval)
            {
                return;
            }
            _lastReload[index] = Stopwatch.GetTimestamp();
            Log.ClusterTopologyStale(logger, key.ToString(), server.EndPoint.ToString() ?? "?", server.IsConnected ? "a replica now" : "not connected", name);
            try
            {
                await multiplexer.ConfigureAsync();
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException or InvalidOperationException)
            {
                Log.ClusterTopologyReloadFailed(logger, ex, name);
            }
            return;
        }
    }
}
