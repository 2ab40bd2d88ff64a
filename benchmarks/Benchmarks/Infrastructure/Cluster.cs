using System.Diagnostics;
using Microsoft.AspNetCore.SignalR;

namespace Benchmarks.Infrastructure;

/// <summary>Nodes on one backplane (or a single node without one) and their clients.</summary>
internal sealed class Cluster : IAsyncDisposable
{
    private static readonly TimeSpan FormTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ProbeRetryInterval = TimeSpan.FromSeconds(1);

    /// <summary>How many clients connect at the same time (a few hundred connect in a few seconds this way).</summary>
    private const int ConnectParallelism = 16;

    private readonly List<BenchNode> _nodes;
    private readonly List<BenchClient> _clients;
    private int _probeRound;

    private Cluster(Backplane backplane, string name, List<BenchNode> nodes, List<BenchClient> clients)
    {
        Backplane = backplane;
        Name = name;
        _nodes = nodes;
        _clients = clients;
    }

    public Backplane Backplane { get; }

    /// <summary>Stream name / channel prefix of this cluster.</summary>
    public string Name { get; }

    public IReadOnlyList<BenchNode> Nodes => _nodes;

    public IReadOnlyList<BenchClient> Clients => _clients;

    /// <summary>Seconds from the start of <see cref="StartAsync"/> until every client had a probe from every node.</summary>
    public double StartSeconds { get; private set; }

    /// <summary>Seconds it took to connect the clients (all nodes already started).</summary>
    public double ConnectSeconds { get; private set; }

    public IHubContext<BenchHub> Hub(int node) => _nodes[node].HubContext;

    /// <summary>Our backplane's reads, connection writes and dispatched messages over this cluster's nodes (null for
    /// Microsoft's backplane and for no backplane, which count nothing of the kind).</summary>
    public AdapterCounters? Counters { get; private set; }

    /// <summary>Starts <paramref name="nodeCount"/> nodes and <paramref name="clientsPerNode"/> clients on each (connected
    /// <see cref="ConnectParallelism"/> at a time), then waits until a message sent to All from each node reaches every client.</summary>
    /// <remarks>A cluster of Microsoft's backplane that does not form gets one more start (noted in the log and on the
    /// console): once in 28 runs of the suite, under the load of the other tests, one stayed deaf for the whole 30 s,
    /// every node connected and nothing logged, while other clusters of it formed in the same process at the same time.
    /// Ours gets no second start: a cluster of ours that does not form is a failure to see.</remarks>
    public static async Task<Cluster> StartAsync(Backplane backplane, string redisConnectionString, string name, int nodeCount, int clientsPerNode, LogSink log,
        Action<int, SignalR.RedisStreams.RedisStreamsOptions>? configure = null)
    {
        var cluster = await StartOnceAsync(backplane, redisConnectionString, name, nodeCount, clientsPerNode, log, configure);
        var failed = $"The {backplane.Short()} cluster '{name}' did not form within {FormTimeout.TotalSeconds:0} s";
        if (cluster is null && backplane == Backplane.MicrosoftPubSub)
        {
            var note = failed + "; starting it again, once.";
            Console.WriteLine("   " + note);
            log.Note(note);
            cluster = await StartOnceAsync(backplane, redisConnectionString, name, nodeCount, clientsPerNode, log, configure);
        }
        return cluster ?? throw new TimeoutException(failed + ".");
    }

    /// <summary>One start (see <see cref="StartAsync"/>); null, with everything it started stopped again, when the cluster
    /// did not form within <see cref="FormTimeout"/>.</summary>
    private static async Task<Cluster?> StartOnceAsync(Backplane backplane, string redisConnectionString, string name, int nodeCount, int clientsPerNode, LogSink log,
        Action<int, SignalR.RedisStreams.RedisStreamsOptions>? configure)
    {
        var nodes = new List<BenchNode>();
        var clients = new BenchClient?[nodeCount * clientsPerNode];
        var clock = Stopwatch.StartNew();
        double connectSeconds;
        try
        {
            for (var i = 0; i < nodeCount; i++)
            {
                nodes.Add(await BenchNode.StartAsync(backplane, i, redisConnectionString, name, log, configure));
            }

            var nodesStarted = clock.Elapsed;
            // Clients are numbered node by node: node 0's first, then node 1's, and so on.
            await Parallel.ForEachAsync(
                Enumerable.Range(0, clients.Length),
                new ParallelOptions { MaxDegreeOfParallelism = ConnectParallelism },
                async (i, _) =>
                {
                    var node = nodes[i / clientsPerNode];
                    clients[i] = await BenchClient.ConnectAsync(node.Index, node.HubUrl);
                });
            connectSeconds = (clock.Elapsed - nodesStarted).TotalSeconds;
            log.Note($"{backplane.Short()} cluster '{name}': {nodeCount} nodes started in {nodesStarted.TotalSeconds:0.0} s, " +
                     $"{clients.Length} clients connected in {connectSeconds:0.0} s");
        }
        catch
        {
            await Task.WhenAll(clients.OfType<BenchClient>().Select(c => c.DisposeAsync().AsTask()));
            await Task.WhenAll(nodes.Select(n => n.DisposeAsync().AsTask()));
            throw;
        }

        var cluster = new Cluster(backplane, name, nodes, [.. clients.OfType<BenchClient>()]);
        if (backplane == Backplane.RedisStreams)
        {
            cluster.Counters = new AdapterCounters(nodes.Select(n => n.MeterFactory));
        }
        if (!await cluster.ProbeAsync(FormTimeout))
        {
            await cluster.DisposeAsync();
            return null;
        }

        cluster.StartSeconds = clock.Elapsed.TotalSeconds;
        cluster.ConnectSeconds = connectSeconds;
        return cluster;
    }

    /// <summary>Sends a probe to All from each node, again every second, until every client has it; false if that
    /// does not happen within <paramref name="timeout"/>. Send errors count as "not yet".</summary>
    public async Task<bool> ProbeAsync(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        foreach (var node in _nodes)
        {
            var delivered = false;
            while (!delivered && clock.Elapsed < timeout)
            {
                var token = $"{Name}-{node.Index}-{Interlocked.Increment(ref _probeRound)}";
                try
                {
                    using var sendTimeout = new CancellationTokenSource(ProbeRetryInterval);
                    await node.HubContext.Clients.All.SendAsync(BenchClient.ProbeMethod, token, sendTimeout.Token);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    // The backplane is not ready (or Redis is down): retry below.
                }

                var attempt = Stopwatch.StartNew();
                while (attempt.Elapsed < ProbeRetryInterval && clock.Elapsed < timeout)
                {
                    if (_clients.All(c => c.HasProbe(token)))
                    {
                        delivered = true;
                        break;
                    }

                    // Polling interval of a bounded wait for the probe.
                    await Task.Delay(10);
                }
            }

            if (!delivered)
            {
                return false;
            }
        }

        return true;
    }

    public async ValueTask DisposeAsync()
    {
        Counters?.Dispose();
        await Task.WhenAll(_clients.Select(c => c.DisposeAsync().AsTask()));
        // One node after another: Microsoft's lifetime manager unsubscribes synchronously when disposed, and many nodes
        // doing that at once block as many thread-pool threads on Redis replies that those threads would have to read
        // (seen: "Timeout performing UNSUBSCRIBE" after a sweep of 22 nodes). A node that still fails to stop is
        // reported, not thrown: its runs are measured already, and the others must stop too.
        foreach (var node in _nodes)
        {
            try
            {
                await node.DisposeAsync();
            }
            catch (Exception ex)
            {
                Console.Error.WriteLine($"   a node did not stop cleanly ({ex.GetType().Name}: {ex.Message})");
            }
        }
    }
}
