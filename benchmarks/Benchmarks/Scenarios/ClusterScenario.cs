using System.Diagnostics;
using System.Globalization;
using System.Text;
using Benchmarks.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using RedisTestServer;
using SignalR.RedisStreams.Internal;

namespace Benchmarks.Scenarios;

/// <summary>Parameters of the cluster scenario.</summary>
internal sealed record ClusterSettings(int Nodes, int ClientsPerNode, int MessagesPerNode, int InFlightPerNode, int Repeats, TimeSpan RunDeadline)
{
    public static ClusterSettings Default { get; } = new(3, 5, 10_000, 100, 3, TimeSpan.FromSeconds(90));

    public static ClusterSettings Quick { get; } = new(3, 2, 2_000, 100, 1, TimeSpan.FromSeconds(60));
}

/// <summary>
/// Our backplane on a local Redis Cluster (3 masters, 3 replicas): the same traffic with <c>StreamCount</c> 1 and 3.
/// Every node sends its share of the messages to <c>Clients.All</c> at once (node <c>i</c> sends on stream
/// <c>i % StreamCount</c>); the clock stops when every client has every message. Per master: the CPU time Redis spent
/// during the run (<c>INFO cpu</c>, user + sys). On 2 cores shared by the nodes, the clients and six redis-server
/// processes this shows how the load spreads over the masters, not more total speed.
/// </summary>
internal static class ClusterScenario
{
    private const string Text = "The quick brown fox jumps over the lazy dog, then sends a message to every client of the chat.";

    public static async Task<string> RunAsync(ClusterSettings settings, LogSink log)
    {
        Console.WriteLine($"== cluster: {settings.Nodes} nodes x {settings.ClientsPerNode} clients, each node sends {settings.MessagesPerNode} to All, StreamCount 1 vs 3");
        await using var redis = await RedisCluster.StartAsync();
        var masters = await redis.MastersAsync();
        var rows = new List<(int Streams, double MessagesPerSecond, double[] CpuSeconds, long Delivered, long Expected)>();
        foreach (var streams in new[] { 1, 3 })
        {
            var run = Guid.NewGuid().ToString("N")[..8];
            await using var cluster = await Infrastructure.Cluster.StartAsync(Backplane.RedisStreams, redis.ConnectionString, $"cl{streams}-{run}", settings.Nodes,
                settings.ClientsPerNode, log, (index, o) =>
                {
                    o.StreamCount = streams;
                    o.NodeIdForTests = NodeIdOnShard(index % streams, streams);
                });
            for (var repeat = 0; repeat < settings.Repeats; repeat++)
            {
                var before = await CpuAsync(masters);
                var (rate, delivered, expected) = await RunRoundAsync(cluster, repeat + 1, settings);
                var after = await CpuAsync(masters);
                var cpu = before.Select((b, i) => after[i] - b).ToArray();
                rows.Add((streams, rate, cpu, delivered, expected));
                Console.WriteLine($"   StreamCount {streams} run {repeat + 1}: {Stats.F(rate, "#,0")} msg/s, Redis CPU s per master {string.Join(" / ", cpu.Select(c => Stats.F(c, "0.00")))}" +
                                  (delivered == expected ? "" : $" INCOMPLETE {delivered}/{expected}"));
            }
        }

        var text = new StringBuilder();
        text.AppendLine("## Redis Cluster: StreamCount 1 vs 3");
        text.AppendLine();
        text.AppendLine($"A local Redis Cluster of 3 masters and 3 replicas (`cluster-node-timeout` 1 s, no persistence). {settings.Nodes} nodes with " +
                        $"{settings.ClientsPerNode} clients each; every node sends {settings.MessagesPerNode:N0} messages to `Clients.All` at the same time " +
                        $"(at most {settings.InFlightPerNode} in flight each); the clock stops when every client has every message. Node *i* sends on " +
                        "stream *i* mod StreamCount. Redis CPU: `used_cpu_user + used_cpu_sys` of each master over the run. One machine with 2 cores runs " +
                        "the nodes, the clients and six redis-server processes: the figures show how the load spreads over the masters, not more total speed.");
        text.AppendLine();
        var table = new Markdown("StreamCount", "run", "msg/s (all clients have all)", "Redis CPU s, master 1", "master 2", "master 3", "delivered / expected");
        var runIndex = new Dictionary<int, int>();
        foreach (var row in rows)
        {
            runIndex[row.Streams] = runIndex.GetValueOrDefault(row.Streams) + 1;
            table.Row(row.Streams.ToString(CultureInfo.InvariantCulture), runIndex[row.Streams].ToString(CultureInfo.InvariantCulture), Stats.F(row.MessagesPerSecond, "#,0"),
                Stats.F(row.CpuSeconds[0], "0.00"), Stats.F(row.CpuSeconds[1], "0.00"), Stats.F(row.CpuSeconds[2], "0.00"),
                $"{Stats.N(row.Delivered)} / {Stats.N(row.Expected)}");
        }

        text.Append(table);
        return text.ToString();
    }

    private static string NodeIdOnShard(int shard, int count)
    {
        while (true)
        {
            var id = Guid.NewGuid().ToString("N")[..16];
            if (StreamShards.ShardOf(id, count) == shard)
            {
                return id;
            }
        }
    }

    private static async Task<double[]> CpuAsync(IReadOnlyList<RedisServer> masters)
    {
        var cpu = new double[masters.Count];
        for (var i = 0; i < masters.Count; i++)
        {
            var info = await masters[i].RawCommandAsync("INFO", "cpu");
            foreach (var line in info.Split('\n', StringSplitOptions.TrimEntries))
            {
                if (line.StartsWith("used_cpu_user:", StringComparison.Ordinal) || line.StartsWith("used_cpu_sys:", StringComparison.Ordinal))
                {
                    cpu[i] += double.Parse(line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..], CultureInfo.InvariantCulture);
                }
            }
        }

        return cpu;
    }

    private static async Task<(double Rate, long Delivered, long Expected)> RunRoundAsync(Infrastructure.Cluster cluster, int round, ClusterSettings settings)
    {
        var total = settings.MessagesPerNode * cluster.Nodes.Count;
        var counts = new int[cluster.Clients.Count];
        var done = cluster.Clients.Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
        for (var i = 0; i < cluster.Clients.Count; i++)
        {
            var index = i;
            cluster.Clients[i].Throughput = (messageRound, _, _) =>
            {
                if (messageRound == round && Interlocked.Increment(ref counts[index]) == total)
                {
                    done[index].TrySetResult();
                }
            };
        }

        using var deadline = new CancellationTokenSource(settings.RunDeadline);
        var start = Stopwatch.GetTimestamp();
        var senders = cluster.Nodes.Select(node => SendAsync(cluster.Hub(node.Index), node.Index)).ToArray();
        try
        {
            await Task.WhenAll(done.Select(d => d.Task)).WaitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            // Reported as incomplete.
        }

        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        await Task.WhenAll(senders).WaitAsync(TimeSpan.FromSeconds(30));
        foreach (var client in cluster.Clients)
        {
            client.Throughput = null;
        }

        return (total / seconds, counts.Sum(c => (long)c), (long)total * cluster.Clients.Count);

        async Task SendAsync(IHubContext<BenchHub> hub, int node)
        {
            using var window = new SemaphoreSlim(settings.InFlightPerNode, settings.InFlightPerNode);
            var sends = new List<Task>(settings.MessagesPerNode);
            for (var k = 0; k < settings.MessagesPerNode; k++)
            {
                try
                {
                    await window.WaitAsync(deadline.Token);
                }
                catch (OperationCanceledException)
                {
                    break; // past the deadline: reported as incomplete
                }

                var seq = (long)k * cluster.Nodes.Count + node;
                sends.Add(SendOneAsync(seq));
            }

            await Task.WhenAll(sends);

            async Task SendOneAsync(long seq)
            {
                try
                {
                    await hub.Clients.All.SendAsync(BenchClient.ThroughputMethod, round, seq, Stopwatch.GetTimestamp(), Text);
                }
                finally
                {
                    window.Release();
                }
            }
        }
    }
}
