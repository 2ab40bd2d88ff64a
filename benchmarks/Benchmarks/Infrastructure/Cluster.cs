using System.Diagnostics;
using Microsoft.AspNetCore.SignalR;

namespace Benchmarks.Infrastructure;

/// <summary>Two nodes on one backplane and their clients.</summary>
internal sealed class Cluster : IAsyncDisposable
{
    private static readonly TimeSpan FormTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ProbeRetryInterval = TimeSpan.FromSeconds(1);

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

    public IHubContext<BenchHub> Hub(int node) => _nodes[node].HubContext;

    /// <summary>Starts <paramref name="nodeCount"/> nodes and <paramref name="clientsPerNode"/> clients on each, then waits
    /// until a message sent to All from each node reaches every client.</summary>
    public static async Task<Cluster> StartAsync(Backplane backplane, string redisConnectionString, string name, int nodeCount, int clientsPerNode, LogSink log)
    {
        var nodes = new List<BenchNode>();
        var clients = new List<BenchClient>();
        try
        {
            for (var i = 0; i < nodeCount; i++)
            {
                nodes.Add(await BenchNode.StartAsync(backplane, i, redisConnectionString, name, log));
            }

            foreach (var node in nodes)
            {
                for (var c = 0; c < clientsPerNode; c++)
                {
                    clients.Add(await BenchClient.ConnectAsync(node.Index, node.HubUrl));
                }
            }
        }
        catch
        {
            await Task.WhenAll(clients.Select(c => c.DisposeAsync().AsTask()));
            await Task.WhenAll(nodes.Select(n => n.DisposeAsync().AsTask()));
            throw;
        }

        var cluster = new Cluster(backplane, name, nodes, clients);
        if (!await cluster.ProbeAsync(FormTimeout))
        {
            await cluster.DisposeAsync();
            throw new TimeoutException($"The {backplane.Short()} cluster '{name}' did not form within {FormTimeout.TotalSeconds:0} s.");
        }

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
        await Task.WhenAll(_clients.Select(c => c.DisposeAsync().AsTask()));
        await Task.WhenAll(_nodes.Select(n => n.DisposeAsync().AsTask()));
    }
}
