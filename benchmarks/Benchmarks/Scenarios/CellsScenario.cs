using System.Diagnostics;
using System.Globalization;
using Benchmarks.Infrastructure;
using RedisTestServer;

namespace Benchmarks.Scenarios;

/// <summary>Parameters of the cells scenario.</summary>
/// <param name="Servers">Servers per backplane cluster (the ceiling always has one).</param>
/// <param name="ClientsPerServer">WebSocket clients per server of a backplane cluster; the ceiling's one server has all of them.</param>
/// <param name="GroupSize">Clients per group in the group cell (client i is in group i mod (clients / size)).</param>
/// <param name="Repeats">Measured runs per cell and subject; the tables show the median.</param>
/// <param name="MaxRateDuration">How long a max-rate run sends.</param>
/// <param name="WarmupDuration">How long the one warm-up run per cell and subject sends; zero skips warm-up.</param>
/// <param name="MaxMessagesPerRun">A run stops sending after this many messages even before its duration.</param>
/// <param name="BroadcastWindow">Broadcasts in flight (sent, not yet at every client) in the broadcast cells.</param>
/// <param name="FanoutWindow">Sends in flight in the group and direct cells.</param>
/// <param name="FixedRate">Broadcasts per second in the fixed-rate cell.</param>
/// <param name="FixedRateDuration">How long the fixed-rate cell sends.</param>
/// <param name="PublishWindow">Sends in flight (not yet returned) in the publish-path cell: by default as many as
/// redis-benchmark, which it is compared with, keeps in flight (<see cref="RedisBenchmarkClients"/> connections ×
/// <see cref="RedisBenchmarkPipeline"/> commands pipelined on each).</param>
/// <param name="PublishDuration">How long a publish-path run sends.</param>
/// <param name="RedisBenchmarkRequests"><c>redis-benchmark -n</c>.</param>
/// <param name="IdleDuration">How long the process's idle CPU is measured before the cells; zero skips it.</param>
internal sealed record CellsSettings(
    int Servers,
    int ClientsPerServer,
    int GroupSize,
    int Repeats,
    TimeSpan MaxRateDuration,
    TimeSpan WarmupDuration,
    int MaxMessagesPerRun,
    int BroadcastWindow,
    int FanoutWindow,
    int FixedRate,
    TimeSpan FixedRateDuration,
    int PublishWindow,
    TimeSpan PublishDuration,
    int RedisBenchmarkRequests,
    TimeSpan IdleDuration)
{
    public static CellsSettings Default { get; } = new(
        Servers: 3, ClientsPerServer: 100, GroupSize: 10, Repeats: 5,
        MaxRateDuration: TimeSpan.FromSeconds(2), WarmupDuration: TimeSpan.FromSeconds(1), MaxMessagesPerRun: 1 << 21,
        BroadcastWindow: 64, FanoutWindow: 1024,
        FixedRate: 100, FixedRateDuration: TimeSpan.FromSeconds(5),
        PublishWindow: RedisBenchmarkClients * RedisBenchmarkPipeline, PublishDuration: TimeSpan.FromSeconds(2), RedisBenchmarkRequests: 100_000,
        IdleDuration: TimeSpan.FromSeconds(2));

    public static CellsSettings Quick { get; } = Default with
    {
        ClientsPerServer = 20,
        Repeats = 1,
        MaxRateDuration = TimeSpan.FromSeconds(1),
        WarmupDuration = TimeSpan.FromSeconds(0.5),
        MaxWarmupPasses = 1,
        FixedRateDuration = TimeSpan.FromSeconds(2),
        PublishDuration = TimeSpan.FromSeconds(1),
        RedisBenchmarkRequests = 20_000,
        IdleDuration = TimeSpan.FromSeconds(1),
    };

    /// <summary>The test suite's correctness smoke run: 3 servers × 15 clients, at most 300 messages per cell, no warm-up.</summary>
    public static CellsSettings Smoke { get; } = Default with
    {
        ClientsPerServer = 15,
        Repeats = 1,
        MaxRateDuration = TimeSpan.FromSeconds(10),
        WarmupDuration = TimeSpan.Zero,
        MaxMessagesPerRun = 300,
        FixedRateDuration = TimeSpan.FromSeconds(2),
        PublishDuration = TimeSpan.FromSeconds(10),
        RedisBenchmarkRequests = 2_000,
        IdleDuration = TimeSpan.Zero,
    };

    /// <summary><c>redis-benchmark -c</c> (its default, written out) in the publish-path cell.</summary>
    public const int RedisBenchmarkClients = 50;

    /// <summary><c>redis-benchmark -P</c> in the publish-path cell.</summary>
    public const int RedisBenchmarkPipeline = 16;

    /// <summary>Most warm-up passes (<see cref="Warmup"/>): the quick look takes one.</summary>
    public int MaxWarmupPasses { get; init; } = Warmup.MaxPasses;

    public int TotalClients => Servers * ClientsPerServer;
}

/// <summary>The cells of the cells scenario (<see cref="CellsScenario.Cells"/>) and of the sweep (<see cref="SweepScenario.Cells"/>).</summary>
internal enum Cell
{
    Broadcast64,
    Broadcast1K,

    /// <summary>Group sends, every group spread over all servers.</summary>
    Groups,
    Direct,
    FixedRate,
    PublishPath,

    /// <summary>Group sends, every group on one server other than the sender's (the sweep only).</summary>
    LocalGroups,

    /// <summary>Direct sends, every target on one server other than the sender's (the sweep only).</summary>
    DirectOneNode,
}

/// <summary>What is measured: a backplane cluster, the one-server ceiling, or redis-benchmark (publish path).</summary>
internal enum Subject
{
    Ours,
    Microsoft,
    Ceiling,
    RedisBenchmarkXadd,
    RedisBenchmarkPublish,
}

/// <summary>One run of one cell for one subject. Rates are per second of the run (first send to last arrival, or to the
/// last send's return in the publish-path cell).</summary>
internal sealed record CellRun(
    Cell Cell,
    Subject Subject,
    int Repeat,
    string Load,
    double Seconds,
    long Sends,
    long SendFailures,
    long Hung,
    long Deliveries,
    long Expected,
    long Lost,
    long Duplicates,
    long Reordered,
    long Misdelivered,
    long Stale,
    bool Stalled,
    double SendsPerSecond,
    double DeliveriesPerSecond,
    double P50Ms,
    double P99Ms,
    double AllocatedBytesPerSend,
    double CpuMicrosPerDelivery,
    double Cores,
    double RedisCpuMicrosPerDelivery,
    string? Error,
    double WorkItemsPerSend = double.NaN,
    double LockContentionsPerSend = double.NaN,
    double ReadsPerSend = double.NaN,
    double MessagesPerWrite = double.NaN)
{
    public bool Warmup => Repeat == 0;

    /// <summary>Anything that is not "every message sent once, delivered once to each of its recipients, in order".</summary>
    public bool Failed => Lost + Duplicates + Reordered + Misdelivered + SendFailures + Hung > 0 || Stalled;

    /// <summary>The correctness counts, for a failure message.</summary>
    public string Problems() => $"lost {Lost}, duplicated {Duplicates}, reordered {Reordered}, misdelivered {Misdelivered}, " +
                                $"send failures {SendFailures}, never returned {Hung}" + (Stalled ? ", STALLED" : "") + (Error is null ? "" : $" ({Error})");

    /// <summary>"warm-up" or "run N".</summary>
    public string RunName => Warmup ? "warm-up" : "run " + Repeat.ToString(CultureInfo.InvariantCulture);
}

/// <summary>What the cells scenario hands back: the Markdown section, the plot, every run and the correctness violations.</summary>
internal sealed record CellsOutcome(string Markdown, string Svg, IReadOnlyList<CellRun> Runs, IReadOnlyList<string> Violations);

/// <summary>
/// What users run: 3 servers × 100 WebSocket clients per backplane (ours, Microsoft's) plus a one-server no-backplane
/// ceiling with all 300 clients, on one private redis-server; broadcast (64 B, 1 KiB), group, direct and fixed-rate
/// cells, interleaved per repeat, and a publish-path cell against redis-benchmark. Every message is numbered and every
/// client checks it gets each of its messages once and in order.
/// </summary>
internal static class CellsScenario
{
    /// <summary>The cells this scenario runs, in order; the environment variable <c>BENCH_CELLS</c> (e.g. <c>Direct,Groups</c>)
    /// keeps only some, for a quicker A/B of one path while working on it.</summary>
    public static IReadOnlyList<Cell> Cells { get; } = Only("BENCH_CELLS",
        [Cell.Broadcast64, Cell.Broadcast1K, Cell.Groups, Cell.Direct, Cell.FixedRate, Cell.PublishPath]);

    /// <summary>The subjects this scenario runs; the environment variable <c>BENCH_SUBJECTS</c> (e.g. <c>Ours</c>) keeps
    /// only some, so that a profiler attached to the process sees one backplane only (the report then lacks ratios).</summary>
    internal static HashSet<Subject> Subjects { get; } = Environment.GetEnvironmentVariable("BENCH_SUBJECTS") is { Length: > 0 } subjects
        ? subjects.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(n => Enum.Parse<Subject>(n, ignoreCase: true)).ToHashSet()
        : [Subject.Ours, Subject.Microsoft, Subject.Ceiling];

    /// <summary>The cells of <paramref name="all"/> that the environment variable <paramref name="variable"/> names
    /// (comma-separated), in <paramref name="all"/>'s order; all of them when it is not set.</summary>
    internal static Cell[] Only(string variable, Cell[] all) => Only(variable, Environment.GetEnvironmentVariable(variable), all);

    /// <summary>The cells of <paramref name="all"/> that <paramref name="names"/> lists, in <paramref name="all"/>'s
    /// order; all of them when it is empty. A name that is not one of them throws, naming <paramref name="variable"/>.</summary>
    internal static Cell[] Only(string variable, string? names, Cell[] all)
    {
        if (string.IsNullOrWhiteSpace(names))
        {
            return all;
        }
        var wanted = names.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(n => Enum.TryParse<Cell>(n, ignoreCase: true, out var cell) && all.Contains(cell) ? cell : throw new ArgumentException($"{variable}: unknown cell '{n}' (cells: {string.Join(", ", all)})."))
            .ToHashSet();
        return [.. all.Where(wanted.Contains)];
    }

    public static async Task<CellsOutcome> RunAsync(CellsSettings settings, LogSink log)
    {
        Console.WriteLine($"== cells: {settings.Servers} servers x {settings.ClientsPerServer} clients per backplane, ceiling 1 server x {settings.TotalClients}; " +
                          $"{settings.Repeats} repeats, {settings.MaxRateDuration.TotalSeconds:0.#} s per max-rate run");
        var clock = Stopwatch.StartNew();
        await using var redis = await RedisServer.StartAsync(persistent: false);
        var name = $"cells-{Guid.NewGuid().ToString("N")[..6]}";
        var bench = new CellBench(settings, redis);
        var deployments = new List<CellDeployment>();
        var setup = new List<(Subject Subject, int Servers, int Clients, double ConnectSeconds, double StartSeconds)>();
        var warmup = WarmupOutcome.None;
        (double Cores, double AllocatedBytesPerSecond) idle = (double.NaN, double.NaN);
        try
        {
            foreach (var (subject, backplane, servers, perServer) in new[]
            {
                (Subject.Ours, Backplane.RedisStreams, settings.Servers, settings.ClientsPerServer),
                (Subject.Microsoft, Backplane.MicrosoftPubSub, settings.Servers, settings.ClientsPerServer),
                (Subject.Ceiling, Backplane.None, 1, settings.TotalClients),
            }.Where(s => Subjects.Contains(s.Item1)))
            {
                var cluster = await Cluster.StartAsync(backplane, redis.ConnectionString, name, servers, perServer, log);
                var deployment = new CellDeployment(subject, cluster, settings, Cells);
                deployments.Add(deployment);
                await deployment.JoinGroupsAsync();
                Console.WriteLine($"   {subject.Label()}: {servers} server(s), {cluster.Clients.Count} clients connected in {cluster.ConnectSeconds:0.0} s " +
                                  $"(started and probed in {cluster.StartSeconds:0.0} s)");
                setup.Add((subject, servers, cluster.Clients.Count, cluster.ConnectSeconds, cluster.StartSeconds));
            }

            foreach (var (subject, backplane) in new[]
            {
                (Subject.Ours, Backplane.RedisStreams),
                (Subject.Microsoft, Backplane.MicrosoftPubSub),
                (Subject.Ceiling, Backplane.None),
            }.Where(s => Subjects.Contains(s.Item1)))
            {
                // The publish-path cell: one node, no clients, its own stream / channel prefix. Without a backplane
                // (the ceiling) a send to no connection does nothing: what is left is the harness and SignalR's own
                // cost of a send, the floor under both backplanes' figures.
                var cluster = await Cluster.StartAsync(backplane, redis.ConnectionString, name + "-pub", 1, 0, log);
                deployments.Add(new CellDeployment(subject, cluster, settings, Cells) { PublishOnly = true });
            }

            if (settings.WarmupDuration > TimeSpan.Zero)
            {
                warmup = await Warmup.UntilJitSettlesAsync(async () =>
                {
                    foreach (var cell in Cells)
                    {
                        foreach (var deployment in deployments.Where(d => d.Runs(cell)))
                        {
                            bench.Record(await bench.RunAsync(deployment, cell, repeat: 0));
                        }
                    }
                }, settings.MaxWarmupPasses);
            }

            if (settings.IdleDuration > TimeSpan.Zero)
            {
                // What the process costs with everything connected and nothing sent (after the warm-up, so without the JIT's
                // background compilation): part of every CPU figure below.
                GC.Collect();
                var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
                var cpuBefore = Environment.CpuUsage.TotalTime;
                var idleClock = Stopwatch.StartNew();
                await Task.Delay(settings.IdleDuration);
                var idleSeconds = idleClock.Elapsed.TotalSeconds;
                idle = ((Environment.CpuUsage.TotalTime - cpuBefore).TotalSeconds / idleSeconds,
                        (GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore) / idleSeconds);
                Console.WriteLine($"   idle: {idle.Cores:0.000} cores, {idle.AllocatedBytesPerSecond / 1024:#,0} KiB/s allocated with everything connected and nothing sent");
            }

            for (var repeat = 1; repeat <= settings.Repeats; repeat++)
            {
                // Alternate the order (ours, Microsoft, ceiling / the reverse), so a noisy neighbour does not always hit the same one.
                var order = repeat % 2 == 1 ? deployments : Enumerable.Reverse(deployments).ToList();
                foreach (var cell in Cells)
                {
                    // redis-benchmark goes after the nodes on odd repeats and before them on even ones.
                    if (cell == Cell.PublishPath && repeat % 2 == 0)
                    {
                        bench.Record(await bench.RedisBenchmarkAsync(Subject.RedisBenchmarkPublish, repeat));
                        bench.Record(await bench.RedisBenchmarkAsync(Subject.RedisBenchmarkXadd, repeat));
                    }

                    foreach (var deployment in order.Where(d => d.Runs(cell)))
                    {
                        bench.Record(await bench.RunAsync(deployment, cell, repeat));
                    }

                    if (cell == Cell.PublishPath && repeat % 2 == 1)
                    {
                        bench.Record(await bench.RedisBenchmarkAsync(Subject.RedisBenchmarkXadd, repeat));
                        bench.Record(await bench.RedisBenchmarkAsync(Subject.RedisBenchmarkPublish, repeat));
                    }
                }
            }
        }
        finally
        {
            foreach (var deployment in deployments)
            {
                await deployment.Cluster.DisposeAsync();
            }
        }

        var violations = bench.Runs.Where(r => r.Failed).Select(r => $"{r.Cell.Title()} / {r.Subject.Label()} / {r.RunName}: {r.Problems()}").ToList();
        var markdown = CellsReport.Markdown(settings, setup, idle, warmup, bench.Runs, violations, clock.Elapsed);
        var svg = CellsReport.Svg(settings, bench.Runs);
        return new CellsOutcome(markdown, svg, bench.Runs, violations);
    }

    public static string Label(this Subject subject) => subject switch
    {
        Subject.Ours => "ours (Redis Streams)",
        Subject.Microsoft => "Microsoft (pub/sub)",
        Subject.Ceiling => "ceiling (1 server, no backplane)",
        Subject.RedisBenchmarkXadd => "redis-benchmark XADD",
        Subject.RedisBenchmarkPublish => "redis-benchmark PUBLISH",
        _ => subject.ToString(),
    };

    public static string Title(this Cell cell) => cell switch
    {
        Cell.Broadcast64 => "1. broadcast 64 B, max rate",
        Cell.Broadcast1K => "2. broadcast 1 KiB, max rate",
        Cell.Groups => "3. group sends 64 B, max rate",
        Cell.Direct => "4. direct sends to another server, max rate",
        Cell.FixedRate => "5. broadcast at a fixed rate",
        Cell.PublishPath => "6. publish path",
        Cell.LocalGroups => "group sends 64 B, each group on one server, max rate",
        Cell.DirectOneNode => "direct sends to connections of one other server, max rate",
        _ => cell.ToString(),
    };
}
