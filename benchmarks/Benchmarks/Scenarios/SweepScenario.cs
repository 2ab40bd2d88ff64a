using System.Diagnostics;
using System.Globalization;
using Benchmarks.Infrastructure;
using RedisTestServer;

namespace Benchmarks.Scenarios;

/// <summary>Parameters of the node-count sweep.</summary>
/// <param name="NodeCounts">Servers per backplane cluster, in the order measured (each at least 2).</param>
/// <param name="TotalClients">WebSocket clients per backplane cluster at every node count, split evenly over its servers
/// (so a multiple of every node count).</param>
/// <param name="Run">Group size, repeats, durations, windows and message cap of the runs, as in the cells scenario;
/// its <c>Servers</c> and <c>ClientsPerServer</c> are set per node count (<see cref="At"/>).</param>
internal sealed record SweepSettings(IReadOnlyList<int> NodeCounts, int TotalClients, CellsSettings Run)
{
    /// <summary>2, 3 and 6 servers, 300 clients in all: 4 cells × 2 backplanes × (1 warm-up + 3 runs) per node count.</summary>
    public static SweepSettings Default { get; } = new([2, 3, 6], 300, CellsSettings.Default with
    {
        Repeats = 3,
        MaxRateDuration = TimeSpan.FromSeconds(2),
        WarmupDuration = TimeSpan.FromSeconds(1),
        IdleDuration = TimeSpan.Zero,
    });

    public static SweepSettings Quick { get; } = new([2, 3, 6], 60, CellsSettings.Default with
    {
        Repeats = 1,
        MaxRateDuration = TimeSpan.FromSeconds(1),
        WarmupDuration = TimeSpan.FromSeconds(0.2),
        MaxWarmupPasses = 1,
        IdleDuration = TimeSpan.Zero,
    });

    /// <summary>The test suite's correctness smoke run: 2 and 3 servers, 24 clients, groups of 4, at most 300 messages
    /// per run, no warm-up.</summary>
    public static SweepSettings Smoke { get; } = new([2, 3], 24, CellsSettings.Smoke with { GroupSize = 4 });

    /// <summary>How many clients the direct and one-node group cells address at every node count: all the clients of
    /// the non-sending nodes at the smallest node count (150 of 300 at 2 nodes), spread evenly over the non-sending
    /// nodes at the others. With every client of the other nodes addressed instead, a larger node count would spread the
    /// same sends over more connections (150, 200 and 250), each connection's writes carrying fewer messages, and that
    /// would be measured as a cost of the node count.</summary>
    public int Addressed => TotalClients / NodeCounts.Min();

    /// <summary>How many clients the one-node direct cell addresses at every node count, all on node 1: as many as a
    /// node has at the largest node count (50 of 300 at 6 nodes).</summary>
    public int OneNodeAddressed => TotalClients / NodeCounts.Max();

    /// <summary><paramref name="settings"/> with the node counts the environment variable <c>BENCH_SWEEP_NODES</c> names
    /// (e.g. <c>2,6</c>), when it is set. The direct and one-node cells address as many clients as at the fewest of
    /// them (<see cref="Addressed"/>), so <c>2,6</c> measures what the full sweep measures at 2 and 6 nodes.</summary>
    public static SweepSettings WithNodesFromEnvironment(SweepSettings settings)
        => WithNodes(settings, Environment.GetEnvironmentVariable("BENCH_SWEEP_NODES"));

    /// <summary><paramref name="settings"/> with the node counts <paramref name="names"/> lists (comma-separated), or
    /// unchanged when it is empty; a count below 2 or not a number throws, naming <c>BENCH_SWEEP_NODES</c>.</summary>
    internal static SweepSettings WithNodes(SweepSettings settings, string? names)
    {
        if (string.IsNullOrWhiteSpace(names))
        {
            return settings;
        }
        var nodes = names.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(n => int.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count >= 2
                ? count
                : throw new ArgumentException($"BENCH_SWEEP_NODES: '{n}' is not a node count of at least 2 (e.g. BENCH_SWEEP_NODES=2,6)."))
            .ToList();
        return settings with { NodeCounts = nodes };
    }

    /// <summary>The run parameters at <paramref name="nodes"/> servers.</summary>
    public CellsSettings At(int nodes)
    {
        if (nodes < 2 || TotalClients % nodes != 0 || TotalClients / nodes < Run.GroupSize || Addressed % (nodes - 1) != 0)
        {
            throw new InvalidOperationException(
                $"The sweep needs at least 2 nodes, {TotalClients} clients divisible by the node count, at least a group of {Run.GroupSize} per node " +
                $"and its {Addressed} addressed clients divisible by the node count less one; got {nodes} nodes.");
        }

        return Run with { Servers = nodes, ClientsPerServer = TotalClients / nodes };
    }
}

/// <summary>One run of the sweep: the node count and the cell's run.</summary>
internal sealed record SweepRun(int Nodes, CellRun Run);

/// <summary>Per node count and backplane: clients connected, and the seconds to connect, to start and probe, to join the groups.</summary>
internal sealed record SweepSetup(int Nodes, Subject Subject, int Clients, double ConnectSeconds, double StartSeconds, double JoinSeconds);

/// <summary>What the sweep hands back: the Markdown section, the plot, every run and the correctness violations.</summary>
internal sealed record SweepOutcome(string Markdown, string Svg, IReadOnlyList<SweepRun> Runs, IReadOnlyList<string> Violations);

/// <summary>
/// The node-count sweep: at each node count, one cluster per backplane (ours, Microsoft's) with that many nodes and
/// the same total client count; all clusters of all node counts up at once on one private redis-server, running four
/// cells interleaved across node counts and backplanes (direct sends spread over the other nodes, group sends to groups
/// on one node, group sends to groups across the nodes, direct sends to connections of one other node) with the cells scenario's machinery: every message numbered, every
/// client checking it gets each of its messages once, in order and only those.
/// </summary>
internal static class SweepScenario
{
    /// <summary>The cells of the sweep, in order; the environment variable <c>BENCH_SWEEP_CELLS</c> (e.g. <c>Direct</c>)
    /// keeps only some, for a quicker A/B of one path while working on it.</summary>
    public static IReadOnlyList<Cell> Cells { get; } = CellsScenario.Only("BENCH_SWEEP_CELLS", [Cell.Direct, Cell.LocalGroups, Cell.Groups, Cell.DirectOneNode]);

    /// <summary>Whether the environment keeps only some cells, node counts or backplanes (<c>BENCH_SWEEP_CELLS</c>,
    /// <c>BENCH_SWEEP_NODES</c>, <c>BENCH_SUBJECTS</c>): such a run does not replace the committed plot.</summary>
    public static bool Filtered { get; } = new[] { "BENCH_SWEEP_CELLS", "BENCH_SWEEP_NODES", "BENCH_SUBJECTS" }
        .Any(v => !string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(v)));

    public static async Task<SweepOutcome> RunAsync(SweepSettings settings, LogSink log)
    {
        // Fail on bad parameters before starting anything.
        if (settings.NodeCounts.Count == 0 || settings.NodeCounts.Distinct().Count() != settings.NodeCounts.Count)
        {
            throw new InvalidOperationException("The sweep needs distinct node counts.");
        }

        var perNode = settings.NodeCounts.Select(settings.At).ToList();
        Console.WriteLine($"== sweep: {List(settings.NodeCounts)} nodes per backplane, {settings.TotalClients} clients in all; " +
                          $"{settings.Run.Repeats} measured run(s) per cell, {settings.Run.MaxRateDuration.TotalSeconds:0.#} s each");
        var clock = Stopwatch.StartNew();
        await using var redis = await RedisServer.StartAsync(persistent: false);
        var bench = new CellBench(settings.Run, redis);
        var runs = new List<SweepRun>();
        var setup = new List<SweepSetup>();
        var warmup = WarmupOutcome.None;
        var id = Guid.NewGuid().ToString("N")[..6];
        // Every node count's two clusters stay up for the whole sweep, so that the node counts are interleaved too: a
        // node count measured first would otherwise always get the coldest process, and the sweep is about how the
        // figures change from one node count to the next.
        var deployments = new List<(int Nodes, CellDeployment Deployment)>();
        try
        {
            foreach (var cellsSettings in perNode)
            {
                var nodes = cellsSettings.Servers;
                // Each node count's clusters have their own stream / channel prefix.
                var name = $"sweep{nodes}-{id}";
                foreach (var (subject, backplane) in new[] { (Subject.Ours, Backplane.RedisStreams), (Subject.Microsoft, Backplane.MicrosoftPubSub) }
                    .Where(s => CellsScenario.Subjects.Contains(s.Item1)))
                {
                    var cluster = await Cluster.StartAsync(backplane, redis.ConnectionString, name, nodes, cellsSettings.ClientsPerServer, log);
                    var deployment = new CellDeployment(subject, cluster, cellsSettings, Cells, settings.Addressed, settings.OneNodeAddressed);
                    deployments.Add((nodes, deployment));
                    var join = Stopwatch.StartNew();
                    await deployment.JoinGroupsAsync();
                    setup.Add(new SweepSetup(nodes, subject, cluster.Clients.Count, cluster.ConnectSeconds, cluster.StartSeconds, join.Elapsed.TotalSeconds));
                    Console.WriteLine($"   {nodes} nodes, {subject.Label()}: {cluster.Clients.Count} clients connected in {cluster.ConnectSeconds:0.0} s " +
                                      $"(started and probed in {cluster.StartSeconds:0.0} s), groups joined in {join.Elapsed.TotalSeconds:0.0} s");
                }
            }

            async Task MeasureAsync(int nodes, CellDeployment deployment, Cell cell, int repeat)
            {
                var run = await bench.RunAsync(deployment, cell, repeat);
                bench.Record(run, $"{nodes} nodes, {cell.SweepName()}");
                runs.Add(new SweepRun(nodes, run));
            }

            if (settings.Run.WarmupDuration > TimeSpan.Zero)
            {
                warmup = await Warmup.UntilJitSettlesAsync(async () =>
                {
                    foreach (var (nodes, deployment) in deployments)
                    {
                        foreach (var cell in Cells)
                        {
                            await MeasureAsync(nodes, deployment, cell, repeat: 0);
                        }
                    }
                }, settings.Run.MaxWarmupPasses);
            }

            for (var repeat = 1; repeat <= settings.Run.Repeats; repeat++)
            {
                // Cell by cell, every node count and backplane one after the other: the flatness compares one cell's
                // node counts, so they run seconds apart rather than a whole pass of the other cells apart (the
                // machine's speed drifts). Alternate the order of the node counts (2, 3, 6 / 6, 3, 2) and of the
                // backplanes (ours, Microsoft / Microsoft, ours), so a noisy neighbour or a warming process does not
                // always hit the same one.
                var odd = repeat % 2 == 1;
                foreach (var cell in Cells)
                {
                    foreach (var nodes in odd ? settings.NodeCounts : Enumerable.Reverse(settings.NodeCounts))
                    {
                        var here = deployments.Where(d => d.Nodes == nodes).Select(d => d.Deployment).ToList();
                        foreach (var deployment in odd ? here : Enumerable.Reverse(here))
                        {
                            await MeasureAsync(nodes, deployment, cell, repeat);
                        }
                    }
                }
            }
        }
        finally
        {
            foreach (var (_, deployment) in deployments)
            {
                await deployment.Cluster.DisposeAsync();
            }
        }

        var violations = runs.Where(r => r.Run.Failed).Select(r =>
            $"{r.Nodes} nodes / {r.Run.Cell.SweepTitle()} / {r.Run.Subject.Label()} / {r.Run.RunName}: {r.Run.Problems()}").ToList();
        var markdown = SweepReport.Markdown(settings, setup, warmup, runs, violations, clock.Elapsed);
        var svg = SweepReport.Svg(settings, runs);
        return new SweepOutcome(markdown, svg, runs, violations);
    }

    /// <summary>The sweep's numbered title of a cell.</summary>
    public static string SweepTitle(this Cell cell) => cell switch
    {
        Cell.Direct => "1. direct sends to a connection on another node",
        Cell.LocalGroups => "2. group sends, each group on one node",
        Cell.Groups => "3. group sends, each group across the nodes",
        Cell.DirectOneNode => "4. direct sends to connections of one other node",
        _ => cell.Title(),
    };

    /// <summary>A short name for the console.</summary>
    public static string SweepName(this Cell cell) => cell switch
    {
        Cell.Direct => "direct",
        Cell.LocalGroups => "groups on one node",
        Cell.Groups => "groups across nodes",
        Cell.DirectOneNode => "direct to one node",
        _ => cell.ToString(),
    };

    /// <summary>"2, 3 and 6".</summary>
    public static string List(IReadOnlyList<int> values)
        => values.Count == 1
            ? values[0].ToString(CultureInfo.InvariantCulture)
            : string.Join(", ", values.Take(values.Count - 1).Select(v => v.ToString(CultureInfo.InvariantCulture))) + " and " + values[^1].ToString(CultureInfo.InvariantCulture);
}
