using System.Globalization;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Cluster;

/// <summary>Starts backplane nodes on a Redis Cluster with <see cref="StreamCount"/> streams, the <c>i</c>-th node to be
/// configured sending on stream <c>i % StreamCount</c> (its id is picked so; nodes start in parallel, so which node
/// gets which stream varies), so that every stream carries a sender's packets.</summary>
internal static class ClusterNodes
{
    public const int StreamCount = 3;

    public static Task<TestCluster> StartAsync(RedisCluster redis, int nodeCount, HubProtocolKind protocol, ITestOutputHelper output,
        Action<RedisStreamsOptions>? configure = null)
    {
        var next = -1;
        return TestCluster.StartAsync(redis.ConnectionString, nodeCount, protocol, output, o =>
        {
            o.StreamCount = StreamCount;
            o.NodeIdForTests = NodeIdOnShard(Interlocked.Increment(ref next) % StreamCount);
            configure?.Invoke(o);
        });
    }

    /// <summary>A fresh node id whose stream is <paramref name="shard"/>.</summary>
    public static string NodeIdOnShard(int shard)
    {
        while (true)
        {
            var id = Guid.NewGuid().ToString("N")[..16];
            if (StreamShards.ShardOf(id, StreamCount) == shard)
            {
                return id;
            }
        }
    }

    public static BackplaneNode Backplane(this TestCluster cluster, int node)
        => (BackplaneNode)cluster.Nodes[node].Services.GetService(typeof(BackplaneNode))!;

    /// <summary>The cluster slot of the stream node <paramref name="node"/> sends on.</summary>
    public static int SendSlot(this TestCluster cluster, int node)
    {
        var backplane = cluster.Backplane(node);
        return StreamShards.SlotOfKey(backplane.ShardKeys[backplane.SendShard].StreamName);
    }

    /// <summary>Entries in each of the cluster's streams.</summary>
    public static async Task<long[]> StreamLengthsAsync(this TestCluster cluster, RedisCluster redis)
    {
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = connection.GetDatabase();
        var lengths = new List<long>();
        foreach (var keys in cluster.Backplane(0).ShardKeys)
        {
            lengths.Add(await db.StreamLengthAsync(keys.Stream));
        }
        return [.. lengths];
    }

    public static string Show(IEnumerable<long> values) => string.Join(", ", values.Select(v => v.ToString(CultureInfo.InvariantCulture)));
}
