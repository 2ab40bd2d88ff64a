using System.Globalization;
using System.Net;
using AppHost.Tests.Infrastructure;
using Aspire.Hosting;
using Aspire.Hosting.Testing;
using StackExchange.Redis;

namespace AppHost.Tests.Cluster;

/// <summary>
/// The app's local Redis Cluster (<c>Redis:Topology=cluster</c>) seen from a test, by resource name (redis-1..redis-6):
/// which node is master of a slot, its replica, waiting until a replica has taken over and until the cluster is whole
/// again. It asks the nodes themselves (<c>CLUSTER NODES</c>, parsed by StackExchange.Redis; <c>CLUSTER INFO</c>;
/// <c>INFO replication</c>) on an admin connection of its own, never a node that a fault may have frozen.
/// </summary>
internal sealed class AppRedisCluster : IAsyncDisposable
{
    private readonly ConnectionMultiplexer _redis;
    private readonly Dictionary<int, string> _resourceOfPort;

    private AppRedisCluster(ConnectionMultiplexer redis, Dictionary<int, string> resourceOfPort)
    {
        _redis = redis;
        _resourceOfPort = resourceOfPort;
    }

    /// <summary>What the last poll saw (for a timeout's message).</summary>
    public string LastSeen { get; private set; } = "";

    public static async Task<AppRedisCluster> ConnectAsync(DistributedApplication app, CancellationToken cancellationToken)
    {
        var connectionString = await app.GetConnectionStringAsync(AppHostSettings.RedisResourceName, cancellationToken)
            ?? throw new InvalidOperationException("redis has no connection string.");
        var options = ConfigurationOptions.Parse(connectionString);
        options.AllowAdmin = true;
        // A frozen node must not hold a poll for long: the poll asks another node next time.
        options.AsyncTimeout = 2000;
        options.SyncTimeout = 2000;
        var resourceOfPort = ClusterAppFixture.RedisNodeNames.ToDictionary(r => app.GetEndpoint(r, "tcp").Port, r => r);
        return new AppRedisCluster(await ConnectionMultiplexer.ConnectAsync(options), resourceOfPort);
    }

    /// <summary>The cluster slot of <paramref name="key"/>.</summary>
    public int SlotOf(string key) => _redis.HashSlot(key);

    /// <summary>The redis-N resource that is master of <paramref name="slot"/> now.</summary>
    public async Task<string> MasterOfSlotAsync(int slot)
    {
        var nodes = await NodesAsync([]);
        return ResourceOf(Owner(nodes, slot) ?? throw new InvalidOperationException($"Slot {slot} has no master: {LastSeen}"));
    }

    /// <summary>The redis-N resource that replicates <paramref name="master"/>.</summary>
    public async Task<string> ReplicaOfAsync(string master)
    {
        var nodes = await NodesAsync([]);
        var id = nodes.Nodes.Single(n => ResourceOf(n) == master).NodeId;
        return ResourceOf(nodes.Nodes.First(n => n.IsReplica && n.ParentNodeId == id && !n.IsFail && !n.IsPossiblyFail));
    }

    /// <summary>Waits until a node other than <paramref name="old"/> is master of <paramref name="slot"/> and reports
    /// <c>cluster_state:ok</c>, asking the other nodes only; returns it.</summary>
    public async Task<string> WaitForNewMasterAsync(int slot, string old, TimeSpan timeout)
    {
        string? found = null;
        await UntilAsync(async () =>
        {
            var owner = Owner(await NodesAsync([old]), slot);
            if (owner is null || ResourceOf(owner) == old)
            {
                return false;
            }
            found = ResourceOf(owner);
            return (await InfoAsync(found, "CLUSTER", "INFO")).Contains("cluster_state:ok", StringComparison.Ordinal);
        }, timeout, $"a new master of slot {slot} instead of {old}");
        return found!;
    }

    /// <summary>Waits until the cluster is whole: every node answers with <c>cluster_state:ok</c> and knows all six,
    /// none is flagged failing, three masters own slots, each with a replica whose link to it is up (so that it can
    /// take over in the next fault).</summary>
    public Task WaitUntilWholeAsync(TimeSpan timeout) => UntilAsync(async () =>
    {
        foreach (var resource in _resourceOfPort.Values)
        {
            var info = await InfoAsync(resource, "CLUSTER", "INFO");
            if (!info.Contains("cluster_state:ok", StringComparison.Ordinal)
                || !info.Contains("cluster_known_nodes:" + _resourceOfPort.Count.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal))
            {
                LastSeen = resource + ": " + info.Split('\n')[0].Trim();
                return false;
            }
        }
        var nodes = await NodesAsync([]);
        var masters = nodes.Nodes.Where(n => !n.IsReplica && n.Slots.Count > 0).ToList();
        if (nodes.Nodes.Any(n => n.IsFail || n.IsPossiblyFail) || masters.Count != _resourceOfPort.Count / 2
            || masters.Any(m => !nodes.Nodes.Any(r => r.IsReplica && r.ParentNodeId == m.NodeId)))
        {
            return false;
        }
        foreach (var replica in nodes.Nodes.Where(n => n.IsReplica))
        {
            if (!(await InfoAsync(ResourceOf(replica), "INFO", "replication")).Contains("master_link_status:up", StringComparison.Ordinal))
            {
                LastSeen = ResourceOf(replica) + ": master link down";
                return false;
            }
        }
        return true;
    }, timeout, "the cluster to be whole again");

    /// <summary><c>CLUSTER FAILOVER</c> sent to the replica <paramref name="replica"/>: it takes over its master's slots
    /// once it has every write.</summary>
    public async Task FailoverAsync(string replica)
    {
        var reply = await Server(replica).ExecuteAsync("CLUSTER", "FAILOVER");
        if (reply.ToString() != "OK")
        {
            throw new InvalidOperationException($"CLUSTER FAILOVER on {replica} answered: {reply}");
        }
    }

    public async ValueTask DisposeAsync() => await _redis.DisposeAsync();

    /// <summary>Polls <paramref name="condition"/> (every 50 ms: a failover takes about a second) until true; on timeout
    /// says what the last poll saw.</summary>
    private async Task UntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        try
        {
            await Eventually.TrueAsync(condition, timeout, what, TimeSpan.FromMilliseconds(50));
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"{ex.Message} (last seen: {LastSeen})", ex);
        }
    }

    private static ClusterNode? Owner(ClusterConfiguration nodes, int slot)
        => nodes.Nodes.FirstOrDefault(n => !n.IsReplica && !n.IsFail && n.Slots.Any(r => slot >= r.From && slot <= r.To));

    /// <summary><c>CLUSTER NODES</c> of the first node (not one of <paramref name="avoid"/>) that answers.</summary>
    private async Task<ClusterConfiguration> NodesAsync(IReadOnlyCollection<string> avoid)
    {
        Exception? last = null;
        foreach (var resource in _resourceOfPort.Values.Where(r => !avoid.Contains(r)))
        {
            try
            {
                var nodes = await Server(resource).ClusterNodesAsync();
                if (nodes is not null)
                {
                    LastSeen = $"from {resource}: " + string.Join(" | ", nodes.Nodes.Select(n =>
                        $"{NameOf(n)} {(n.IsReplica ? "replica" : "master")}{(n.IsFail ? " fail" : n.IsPossiblyFail ? " fail?" : "")} {string.Join(',', n.Slots)}"));
                    return nodes;
                }
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                last = ex; // killed, frozen, or just restarted: ask the next one
            }
        }
        throw new InvalidOperationException("No node of the cluster answers CLUSTER NODES.", last);
    }

    private async Task<string> InfoAsync(string resource, string command, string argument)
        => (await Server(resource).ExecuteAsync(command, argument)).ToString() ?? "";

    private IServer Server(string resource)
        => _redis.GetServer(new IPEndPoint(IPAddress.Loopback, _resourceOfPort.Single(p => p.Value == resource).Key));

    private string NameOf(ClusterNode node)
        => node.EndPoint is IPEndPoint { Port: var port } && _resourceOfPort.TryGetValue(port, out var resource) ? resource : node.EndPoint?.ToString() ?? node.NodeId;

    private string ResourceOf(ClusterNode node)
        => node.EndPoint is IPEndPoint { Port: var port } && _resourceOfPort.TryGetValue(port, out var resource)
            ? resource
            : throw new InvalidOperationException($"{node.EndPoint} is not a node of the app's cluster.");
}
