using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Benchmarks.Infrastructure;
using Microsoft.AspNetCore.SignalR;
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
/// <param name="PublishWindow">Sends in flight (not yet returned) in the publish-path cell.</param>
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
        PublishWindow: 256, PublishDuration: TimeSpan.FromSeconds(2), RedisBenchmarkRequests: 100_000,
        IdleDuration: TimeSpan.FromSeconds(2));

    public static CellsSettings Quick { get; } = Default with
    {
        ClientsPerServer = 20,
        Repeats = 1,
        MaxRateDuration = TimeSpan.FromSeconds(1),
        WarmupDuration = TimeSpan.FromSeconds(0.5),
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

    public int TotalClients => Servers * ClientsPerServer;
}

/// <summary>The cells of the scenario.</summary>
internal enum Cell
{
    Broadcast64,
    Broadcast1K,
    Groups,
    Direct,
    FixedRate,
    PublishPath,
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
    string? Error)
{
    public bool Warmup => Repeat == 0;

    /// <summary>Anything that is not "every message sent once, delivered once to each of its recipients, in order".</summary>
    public bool Failed => Lost + Duplicates + Reordered + Misdelivered + SendFailures + Hung > 0 || Stalled;
}

/// <summary>What the cells scenario hands back: the Markdown section, the plot, every run and the correctness violations.</summary>
internal sealed record CellsOutcome(string Markdown, string Svg, IReadOnlyList<CellRun> Runs, IReadOnlyList<string> Violations);

/// <summary>
/// What users run: 3 servers × 100 WebSocket clients per backplane (ours, Microsoft's) plus a one-server no-backplane
/// ceiling with all 300 clients, on one private redis-server; broadcast (64 B, 1 KiB), group, direct and fixed-rate
/// cells, interleaved per repeat, and a publish-path cell against redis-benchmark. Every message is numbered and every
/// client checks it gets each of its messages once and in order.
/// </summary>
internal static partial class CellsScenario
{
    private static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan DrainDeadline = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan RedisBenchmarkTimeout = TimeSpan.FromSeconds(60);

    public static async Task<CellsOutcome> RunAsync(CellsSettings settings, LogSink log)
    {
        Console.WriteLine($"== cells: {settings.Servers} servers x {settings.ClientsPerServer} clients per backplane, ceiling 1 server x {settings.TotalClients}; " +
                          $"{settings.Repeats} repeats, {settings.MaxRateDuration.TotalSeconds:0.#} s per max-rate run");
        var clock = Stopwatch.StartNew();
        await using var redis = await RedisServer.StartAsync(persistent: false);
        var name = $"cells-{Guid.NewGuid().ToString("N")[..6]}";
        var bench = new Bench(settings, redis);
        var deployments = new List<Deployment>();
        try
        {
            foreach (var (subject, backplane, servers, perServer) in new[]
            {
                (Subject.Ours, Backplane.RedisStreams, settings.Servers, settings.ClientsPerServer),
                (Subject.Microsoft, Backplane.MicrosoftPubSub, settings.Servers, settings.ClientsPerServer),
                (Subject.Ceiling, Backplane.None, 1, settings.TotalClients),
            })
            {
                var cluster = await Cluster.StartAsync(backplane, redis.ConnectionString, name, servers, perServer, log);
                var deployment = new Deployment(subject, cluster, settings);
                deployments.Add(deployment);
                await deployment.JoinGroupsAsync();
                Console.WriteLine($"   {subject.Label()}: {servers} server(s), {cluster.Clients.Count} clients connected in {cluster.ConnectSeconds:0.0} s " +
                                  $"(started and probed in {cluster.StartSeconds:0.0} s)");
                bench.Setup.Add((subject, servers, cluster.Clients.Count, cluster.ConnectSeconds, cluster.StartSeconds));
            }

            foreach (var (subject, backplane) in new[] { (Subject.Ours, Backplane.RedisStreams), (Subject.Microsoft, Backplane.MicrosoftPubSub) })
            {
                // The publish-path cell: one node, no clients, its own stream / channel prefix.
                var cluster = await Cluster.StartAsync(backplane, redis.ConnectionString, name + "-pub", 1, 0, log);
                deployments.Add(new Deployment(subject, cluster, settings) { PublishOnly = true });
            }

            var cells = Enum.GetValues<Cell>();
            if (settings.WarmupDuration > TimeSpan.Zero)
            {
                foreach (var cell in cells)
                {
                    foreach (var deployment in deployments.Where(d => d.Runs(cell)))
                    {
                        bench.Record(await bench.RunAsync(deployment, cell, repeat: 0));
                    }
                }
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
                bench.IdleCores = (Environment.CpuUsage.TotalTime - cpuBefore).TotalSeconds / idleSeconds;
                bench.IdleAllocatedBytesPerSecond = (GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore) / idleSeconds;
                Console.WriteLine($"   idle: {bench.IdleCores:0.000} cores, {bench.IdleAllocatedBytesPerSecond / 1024:#,0} KiB/s allocated with everything connected and nothing sent");
            }

            for (var repeat = 1; repeat <= settings.Repeats; repeat++)
            {
                // Alternate the order (ours, Microsoft, ceiling / the reverse), so a noisy neighbour does not always hit the same one.
                var order = repeat % 2 == 1 ? deployments : Enumerable.Reverse(deployments).ToList();
                foreach (var cell in cells)
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

        var violations = bench.Runs.Where(r => r.Failed).Select(r => $"{r.Cell.Title()} / {r.Subject.Label()} / " +
            $"{(r.Warmup ? "warm-up" : "run " + r.Repeat.ToString(CultureInfo.InvariantCulture))}: lost {r.Lost}, duplicated {r.Duplicates}, " +
            $"reordered {r.Reordered}, misdelivered {r.Misdelivered}, send failures {r.SendFailures}, never returned {r.Hung}" +
            (r.Stalled ? ", STALLED" : "") + (r.Error is null ? "" : $" ({r.Error})")).ToList();
        var markdown = CellsReport.Markdown(settings, bench.Setup, (bench.IdleCores, bench.IdleAllocatedBytesPerSecond), bench.Runs, violations, clock.Elapsed);
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
        _ => cell.ToString(),
    };

    /// <summary>One subject's nodes and clients, and how each cell addresses them.</summary>
    private sealed class Deployment
    {
        private readonly CellsSettings _settings;

        public Deployment(Subject subject, Cluster cluster, CellsSettings settings)
        {
            Subject = subject;
            Cluster = cluster;
            _settings = settings;
            var clients = cluster.Clients;
            Sinks = [.. clients.Select(_ => new ClientSink())];
            for (var i = 0; i < clients.Count; i++)
            {
                clients[i].Throughput = Sinks[i].OnMessage;
            }

            var hub = cluster.Hub(0);
            All = hub.Clients.All;

            GroupCount = Math.Max(1, clients.Count / settings.GroupSize);
            GroupOf = [.. Enumerable.Range(0, clients.Count).Select(i => i % GroupCount)];
            GroupSizes = [.. Enumerable.Range(0, GroupCount).Select(g => GroupOf.Count(x => x == g))];
            GroupProxies = [.. Enumerable.Range(0, GroupCount).Select(g => hub.Clients.Group(GroupName(g)))];

            // Direct targets: the clients of the servers other than server 0. The ceiling has one server: it sends to
            // the same number of clients (the same indices), all local.
            var targets = Enumerable.Range(0, clients.Count).Where(i => i >= settings.ClientsPerServer).ToArray();
            DirectResidue = [.. Enumerable.Repeat(-1, clients.Count)];
            for (var r = 0; r < targets.Length; r++)
            {
                DirectResidue[targets[r]] = r;
            }

            DirectProxies = [.. targets.Select(i => hub.Clients.Client(clients[i].ConnectionId))];
        }

        public Subject Subject { get; }

        public Cluster Cluster { get; }

        public bool PublishOnly { get; init; }

        public ClientSink[] Sinks { get; }

        public IClientProxy All { get; }

        public int GroupCount { get; }

        public int[] GroupOf { get; }

        public int[] GroupSizes { get; }

        public IClientProxy[] GroupProxies { get; }

        public int[] DirectResidue { get; }

        public IClientProxy[] DirectProxies { get; }

        public bool Runs(Cell cell) => PublishOnly == (cell == Cell.PublishPath);

        /// <summary>Every client joins its group through the server it is connected to.</summary>
        public async Task JoinGroupsAsync()
        {
            var clients = Cluster.Clients;
            for (var i = 0; i < clients.Count; i++)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await Cluster.Hub(clients[i].Node).Groups.AddToGroupAsync(clients[i].ConnectionId, GroupName(GroupOf[i]), timeout.Token);
            }
        }

        /// <summary>For a cell: recipients per residue, the proxy per residue, and each client's residue (-1: none).</summary>
        public (int[] Targets, IClientProxy[] Proxies, Func<int, long> ResidueOf) Plan(Cell cell) => cell switch
        {
            Cell.Groups => (GroupSizes, GroupProxies, i => GroupOf[i]),
            Cell.Direct => ([.. DirectProxies.Select(_ => 1)], DirectProxies, i => DirectResidue[i]),
            Cell.PublishPath => ([0], [All], _ => -1),
            _ => ([Sinks.Length], [All], _ => 0),
        };

        public int Window(Cell cell) => cell switch
        {
            Cell.Broadcast64 or Cell.Broadcast1K => _settings.BroadcastWindow,
            Cell.PublishPath => _settings.PublishWindow,
            // The fixed-rate cell is not limited by a window; this only bounds it should delivery stop.
            Cell.FixedRate => Math.Max(_settings.FixedRate * 10, 1),
            _ => _settings.FanoutWindow,
        };

        private static string GroupName(int group) => "g" + group.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>The shared state of a scenario run: the Redis server, the reusable run state, the results.</summary>
    private sealed class Bench
    {
        private static readonly string Payload64 = new('x', 64);
        private static readonly string Payload1K = new('x', 1024);

        private readonly CellsSettings _settings;
        private readonly RedisServer _redis;
        private readonly RunState _state;
        private int _run;

        public Bench(CellsSettings settings, RedisServer redis)
        {
            _settings = settings;
            _redis = redis;
            _state = new RunState(settings.MaxMessagesPerRun);
        }

        public List<CellRun> Runs { get; } = [];

        public List<(Subject Subject, int Servers, int Clients, double ConnectSeconds, double StartSeconds)> Setup { get; } = [];

        /// <summary>Process CPU (cores) with everything connected and nothing sent; NaN if not measured.</summary>
        public double IdleCores { get; set; } = double.NaN;

        /// <summary>Bytes allocated per second in the same idle period; NaN if not measured.</summary>
        public double IdleAllocatedBytesPerSecond { get; set; } = double.NaN;

        public void Record(CellRun run)
        {
            Runs.Add(run);
            var what = run.Warmup ? "warm-up" : $"run {run.Repeat}";
            var correctness = run.Failed
                ? $"  ** lost {run.Lost} dup {run.Duplicates} reordered {run.Reordered} misdelivered {run.Misdelivered} " +
                  $"failed {run.SendFailures} hung {run.Hung}{(run.Stalled ? " STALLED" : "")} {run.Error} **"
                : "";
            Console.WriteLine(run.Cell == Cell.PublishPath
                ? $"   {run.Cell.Title(),-46} {what,-8} {run.Subject.Label(),-34} {Stats.F(run.SendsPerSecond, "#,0"),10} sends/s{correctness}"
                : $"   {run.Cell.Title(),-46} {what,-8} {run.Subject.Label(),-34} {Stats.F(run.DeliveriesPerSecond, "#,0"),10} deliveries/s " +
                  $"p50 {Stats.F(run.P50Ms, "0.0")} p99 {Stats.F(run.P99Ms, "0.0")} ms, {Stats.F(run.CpuMicrosPerDelivery, "0.0")} µs CPU/delivery{correctness}");
        }

        public async Task<CellRun> RunAsync(Deployment deployment, Cell cell, int repeat)
        {
            var run = ++_run;
            var (targets, proxies, residueOf) = deployment.Plan(cell);
            var modulus = targets.Length;
            // The sender stops before a client's record of the run overflows (the publish path has no clients).
            var cap = cell == Cell.PublishPath ? _settings.MaxMessagesPerRun : Math.Min(_settings.MaxMessagesPerRun, (long)ClientSink.Capacity * modulus);
            var windowSize = deployment.Window(cell);
            using var window = new SemaphoreSlim(windowSize, windowSize);
            _state.Reset(run, targets, window, settleOnSend: cell == Cell.PublishPath);
            for (var i = 0; i < deployment.Sinks.Length; i++)
            {
                deployment.Sinks[i].Reset(run, modulus, residueOf(i), _state);
            }

            var payload = cell == Cell.Broadcast1K ? Payload1K : Payload64;
            var duration = repeat == 0 ? _settings.WarmupDuration : cell switch
            {
                Cell.FixedRate => _settings.FixedRateDuration,
                Cell.PublishPath => _settings.PublishDuration,
                _ => _settings.MaxRateDuration,
            };
            var load = LoadAverage();
            var redisCpuBefore = await RedisCpuSecondsAsync();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            var cpuBefore = Environment.CpuUsage.TotalTime;
            var start = Stopwatch.GetTimestamp();

            var stalled = false;
            long seq = 0;
            if (cell == Cell.FixedRate)
            {
                var count = Math.Min(cap, (long)Math.Round(duration.TotalSeconds * _settings.FixedRate));
                var period = Stopwatch.Frequency / (double)_settings.FixedRate;
                for (; seq < count; seq++)
                {
                    var wait = start + (long)(seq * period) - Stopwatch.GetTimestamp();
                    if (wait > 0)
                    {
                        // The schedule; a sender that fell behind sends at once and catches up.
                        await Task.Delay(TimeSpan.FromSeconds(wait / (double)Stopwatch.Frequency));
                    }

                    if (!await window.WaitAsync(StallTimeout))
                    {
                        stalled = true;
                        break;
                    }

                    _state.BeginSend(seq);
                    _ = SendOneAsync(proxies[seq % modulus], run, seq, payload);
                }
            }
            else
            {
                var stopAt = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
                for (; seq < cap && Stopwatch.GetTimestamp() < stopAt; seq++)
                {
                    if (!await window.WaitAsync(StallTimeout))
                    {
                        stalled = true;
                        break;
                    }

                    _state.BeginSend(seq);
                    _ = SendOneAsync(proxies[seq % modulus], run, seq, payload);
                }
            }

            var drained = await DrainAsync(deployment, seq);
            var cpuAfter = Environment.CpuUsage.TotalTime;
            var cpuEnd = Stopwatch.GetTimestamp();
            var allocatedAfter = GC.GetTotalAllocatedBytes(precise: true);
            var redisCpuAfter = await RedisCpuSecondsAsync();

            var sinks = deployment.Sinks;
            var end = cell == Cell.PublishPath ? _state.LastSendEnd : sinks.Max(s => s.LastArrival);
            var seconds = end > start ? Stopwatch.GetElapsedTime(start, end).TotalSeconds : double.NaN;
            var (sent, failed, hung, expected, deliveredOfSent, _) = _state.Tally();
            var deliveries = sinks.Sum(s => (long)s.Received);
            var histogram = new LatencyHistogram();
            foreach (var sink in sinks)
            {
                histogram.Add(sink.Histogram);
            }

            // The unit CPU is divided by: deliveries, or sends in the publish-path cell.
            var units = cell == Cell.PublishPath ? sent : deliveries;
            var cpu = (cpuAfter - cpuBefore).TotalSeconds;
            return new CellRun(
                cell, deployment.Subject, repeat, load, seconds, sent, failed, hung, deliveries, expected,
                Lost: expected - deliveredOfSent,
                Duplicates: sinks.Sum(s => (long)s.Duplicates),
                Reordered: sinks.Sum(s => (long)s.Reordered),
                Misdelivered: sinks.Sum(s => (long)s.Misdelivered),
                Stale: sinks.Sum(s => (long)s.Stale),
                Stalled: stalled || !drained,
                SendsPerSecond: sent / seconds,
                DeliveriesPerSecond: cell == Cell.PublishPath ? double.NaN : deliveries / seconds,
                P50Ms: histogram.PercentileMs(50),
                P99Ms: histogram.PercentileMs(99),
                AllocatedBytesPerSend: (allocatedAfter - allocatedBefore) / (double)Math.Max(seq, 1),
                CpuMicrosPerDelivery: units == 0 ? double.NaN : cpu * 1e6 / units,
                Cores: cpu / Stopwatch.GetElapsedTime(start, cpuEnd).TotalSeconds,
                RedisCpuMicrosPerDelivery: units == 0 || double.IsNaN(redisCpuBefore) || double.IsNaN(redisCpuAfter)
                    ? double.NaN
                    : (redisCpuAfter - redisCpuBefore) * 1e6 / units,
                Error: _state.FirstError);
        }

        /// <summary><c>redis-benchmark -P 16 -n N -q</c> against the same server, as a child process; its requests/s.</summary>
        public async Task<CellRun> RedisBenchmarkAsync(Subject subject, int repeat)
        {
            var key = "cells-benchstream";
            string[] command = subject == Subject.RedisBenchmarkXadd ? ["XADD", key, "*", "f", "v"] : ["PUBLISH", "cells-benchchannel", "x"];
            var load = LoadAverage();
            var redisCpuBefore = await RedisCpuSecondsAsync();
            var clock = Stopwatch.StartNew();
            string? error = null;
            var rate = double.NaN;
            try
            {
                var startInfo = new ProcessStartInfo("redis-benchmark")
                {
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    UseShellExecute = false,
                };
                foreach (var arg in new[] { "-h", "127.0.0.1", "-p", _redis.Port.ToString(CultureInfo.InvariantCulture), "-P", "16",
                                            "-n", _settings.RedisBenchmarkRequests.ToString(CultureInfo.InvariantCulture), "-q" }.Concat(command))
                {
                    startInfo.ArgumentList.Add(arg);
                }

                using var process = Process.Start(startInfo) ?? throw new InvalidOperationException("Could not start redis-benchmark.");
                var output = process.StandardOutput.ReadToEndAsync();
                var errors = process.StandardError.ReadToEndAsync();
                using var timeout = new CancellationTokenSource(RedisBenchmarkTimeout);
                try
                {
                    await process.WaitForExitAsync(timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    process.Kill();
                    throw new TimeoutException($"redis-benchmark did not finish within {RedisBenchmarkTimeout.TotalSeconds:0} s.");
                }

                // -q prints progress lines separated by carriage returns, then "<command>: <n> requests per second, p50=…".
                var matches = RequestsPerSecond().Matches(await output);
                if (process.ExitCode != 0 || matches.Count == 0)
                {
                    throw new InvalidOperationException($"redis-benchmark exited with {process.ExitCode}: {(await errors).Trim()}");
                }

                rate = double.Parse(matches[^1].Groups[1].Value, CultureInfo.InvariantCulture);
            }
            catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or TimeoutException)
            {
                // Not installed or failed: the report says so; it is no correctness failure of a backplane.
                error = ex.Message;
                Console.WriteLine($"   redis-benchmark failed: {ex.Message}");
            }

            var redisCpuAfter = await RedisCpuSecondsAsync();
            await _redis.ExecuteAsync("DEL", key);
            var requests = double.IsNaN(rate) ? 0 : _settings.RedisBenchmarkRequests;
            return new CellRun(
                Cell.PublishPath, subject, repeat, load, clock.Elapsed.TotalSeconds, requests, 0, 0, 0, 0, 0, 0, 0, 0, 0, false,
                SendsPerSecond: rate, DeliveriesPerSecond: double.NaN, P50Ms: double.NaN, P99Ms: double.NaN, AllocatedBytesPerSend: double.NaN,
                CpuMicrosPerDelivery: double.NaN, Cores: double.NaN,
                RedisCpuMicrosPerDelivery: requests == 0 ? double.NaN : (redisCpuAfter - redisCpuBefore) * 1e6 / requests,
                Error: error);
        }

        private async Task SendOneAsync(IClientProxy proxy, int run, long seq, string payload)
        {
            try
            {
                await proxy.SendAsync(BenchClient.ThroughputMethod, run, seq, Stopwatch.GetTimestamp(), payload);
                _state.SendReturned(run, seq);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                _state.SendThrew(run, seq, ex);
            }
            finally
            {
                _state.EndSend(run);
            }
        }

        /// <summary>Waits until every message sent is settled and every send returned; false if nothing moves for
        /// <see cref="StallTimeout"/> or it takes longer than <see cref="DrainDeadline"/>.</summary>
        private async Task<bool> DrainAsync(Deployment deployment, long sent)
        {
            var clock = Stopwatch.StartNew();
            var lastProgress = -1L;
            var lastChange = Stopwatch.StartNew();
            while (clock.Elapsed < DrainDeadline)
            {
                var settled = _state.Settled;
                if (settled == sent && _state.Outstanding == 0)
                {
                    return true;
                }

                var progress = settled + deployment.Sinks.Sum(s => (long)s.Received) - _state.Outstanding;
                if (progress != lastProgress)
                {
                    lastProgress = progress;
                    lastChange.Restart();
                }
                else if (lastChange.Elapsed > StallTimeout)
                {
                    return false;
                }

                // Polling interval of the bounded drain wait.
                await Task.Delay(2);
            }

            return false;
        }

        /// <summary>redis-server's own CPU time (user + system, from <c>INFO cpu</c>), in seconds; NaN if unavailable.</summary>
        private async Task<double> RedisCpuSecondsAsync()
        {
            try
            {
                var info = (await _redis.ExecuteAsync("INFO", "cpu")).ToString();
                double total = 0;
                foreach (var line in info.Split('\n'))
                {
                    var parts = line.Trim().Split(':');
                    if (parts.Length == 2 && parts[0] is "used_cpu_sys" or "used_cpu_user")
                    {
                        total += double.Parse(parts[1], CultureInfo.InvariantCulture);
                    }
                }

                return total;
            }
            catch (Exception ex) when (ex is StackExchange.Redis.RedisException or FormatException or TimeoutException)
            {
                return double.NaN;
            }
        }

        private static string LoadAverage()
        {
            try
            {
                return File.ReadAllText("/proc/loadavg").Split(' ')[0];
            }
            catch (IOException)
            {
                return "?";
            }
        }
    }

    [GeneratedRegex(@"([0-9]+(?:\.[0-9]+)?) requests per second")]
    private static partial Regex RequestsPerSecond();
}
