using System.Globalization;
using System.Security;
using System.Text;
using Benchmarks.Infrastructure;

namespace Benchmarks.Scenarios;

/// <summary>The cells scenario's Markdown section and its plot (a hand-written SVG).</summary>
internal static class CellsReport
{
    private static readonly Subject[] Delivering = [Subject.Ours, Subject.Microsoft, Subject.Ceiling];

    public static string Markdown(
        CellsSettings settings, IReadOnlyList<(Subject Subject, int Servers, int Clients, double ConnectSeconds, double StartSeconds)> setup,
        (double Cores, double AllocatedBytesPerSecond) idle, WarmupOutcome warmup, IReadOnlyList<CellRun> runs, IReadOnlyList<string> violations, TimeSpan elapsed)
    {
        var text = new StringBuilder();
        text.AppendLine("## Cells: what users run");
        text.AppendLine();
        AppendViolations(text, violations);

        var clients = settings.TotalClients;
        text.AppendLine(
            $"One private `redis-server` (no persistence) for the whole scenario, shared by: **ours** ({settings.Servers} servers × " +
            $"{settings.ClientsPerServer} WebSocket clients), **Microsoft's** (the same) and the **ceiling**: one server with all {clients} " +
            "clients and no backplane (SignalR's default hub lifetime manager: what a single server does, the best a backplane can " +
            "approach). All three stay up for the whole scenario and run **interleaved**: per repeat, each cell runs for each of them, in " +
            "the order ours, Microsoft, ceiling on odd repeats and the reverse on even ones. Clients are the SignalR .NET client, JSON " +
            "protocol, WebSockets, in the same process as the servers (so client work is in every CPU and allocation figure, the same for " +
            "all). Every message comes from server 0's `IHubContext<BenchHub>` and carries a run id, a sequence number and the send " +
            "timestamp; each client checks it gets each message addressed to it once, in order, and only those.");
        text.AppendLine();
        text.AppendLine("Setup (clients connect 16 at a time): " + string.Join("; ", setup.Select(s => string.Create(CultureInfo.InvariantCulture,
            $"{s.Subject.Label()}: {s.Servers} server(s), {s.Clients} clients connected in {s.ConnectSeconds:0.0} s (servers started, clients connected and probed in {s.StartSeconds:0.0} s)"))) +
            (double.IsNaN(idle.Cores) ? "." : string.Create(CultureInfo.InvariantCulture,
                $". With all {3 * clients} clients connected and nothing sent, the process uses {idle.Cores:0.000} cores and allocates " +
                $"{idle.AllocatedBytesPerSecond / 1024:#,0} KiB/s (the SignalR keep-alive timers of {3 * clients} connections on both ends, " +
                $"Kestrel's heartbeat, the backplanes' idle reads and heartbeats): part of every CPU and allocation figure below, the same for all subjects.")));
        text.AppendLine();
        text.AppendLine("The cells:");
        text.AppendLine();
        text.AppendLine(
            $"1. **Broadcast 64 B**: `Clients.All.SendAsync` with a 64-character string, as fast as possible with at most {settings.BroadcastWindow} " +
            $"broadcasts *in flight* (sent and not yet received by all {clients} clients; a slot frees when the last recipient has it, so the " +
            "sender cannot run ahead of delivery and queues stay bounded). Unit: deliveries (one message at one client).");
        text.AppendLine(CultureInfo.InvariantCulture, $"2. **Broadcast 1 KiB**: the same with a 1,024-character string.");
        text.AppendLine(
            $"3. **Group sends 64 B**: {clients / settings.GroupSize} groups of {settings.GroupSize} (client *i* is in group *i* mod " +
            $"{clients / settings.GroupSize}, so every group spans all servers; each client joined through its own server); sends go " +
            $"round-robin over the groups with at most {settings.FanoutWindow} in flight. Unit: deliveries.");
        text.AppendLine(
            $"4. **Direct sends**: `Clients.Client(id)` round-robin over the {clients - settings.ClientsPerServer} clients of servers 1 and 2 " +
            $"(another server than the sender), at most {settings.FanoutWindow} in flight. Unit: sends (= deliveries). The ceiling has a " +
            "single server: there the same sends go to the same number of clients, all local.");
        text.AppendLine(
            $"5. **Fixed rate**: {settings.FixedRate} broadcasts/s (64 B) to all {clients} clients for {settings.FixedRateDuration.TotalSeconds:0.#} s, " +
            "each send on schedule, not waiting for the previous one: latency at a load every subject sustains, and the CPU it costs.");
        text.AppendLine(
            $"6. **Publish path**: one more node per backplane with no clients (its own stream / channel prefix on the same Redis) sends " +
            $"64 B to `Clients.All` as fast as it can with {settings.PublishWindow} `SendAsync` in flight for {settings.PublishDuration.TotalSeconds:0.#} s " +
            $"(ours: sends taken from the outbox in batches, one idempotent-append Lua script call per batch; Microsoft: one `PUBLISH` per send); " +
            $"each repeat also runs `redis-benchmark -c {CellsSettings.RedisBenchmarkClients} -P {CellsSettings.RedisBenchmarkPipeline} " +
            $"-n {settings.RedisBenchmarkRequests} -q XADD cells-benchstream '*' f v` and `… PUBLISH cells-benchchannel x` against the same " +
            "server, as child processes (redis-benchmark 7.0 has no built-in `-t xadd` test). Unit: sends." +
            (settings.PublishWindow == CellsSettings.RedisBenchmarkClients * CellsSettings.RedisBenchmarkPipeline
                ? $" The node keeps as many sends in flight as redis-benchmark keeps commands ({CellsSettings.RedisBenchmarkClients} connections × {CellsSettings.RedisBenchmarkPipeline} pipelined), so both are compared at the same concurrency."
                : ""));
        text.AppendLine();
        text.AppendLine(
            $"Max-rate runs send for {settings.MaxRateDuration.TotalSeconds:0.#} s and then wait until everything sent has arrived; the rate " +
            $"is deliveries (or sends) divided by the time from the first send to the last arrival. {(settings.WarmupDuration > TimeSpan.Zero ? $"Warm-up: one run of {settings.WarmupDuration.TotalSeconds:0.#} s per cell and subject in each pass (checked for correctness, not counted); {warmup.Describe()}. Then " : "No warm-up; ")}" +
            $"**{settings.Repeats} measured runs** per cell and subject; tables show the **median** of each metric. Sizes were chosen to " +
            $"keep `all` under ~10 minutes on 2 cores; this section took {elapsed.TotalSeconds:0} s.");
        text.AppendLine();
        text.AppendLine("- **latency** = arrival at the client − the timestamp taken just before `SendAsync` (same process clock), over every " +
                        "delivery of the run (histogram, ≤ 0.8 % bucket error). In max-rate cells it includes queueing behind the window.");
        text.AppendLine("- **allocated bytes per send** = `GC.GetTotalAllocatedBytes(true)` delta over the run / sends, whole process (servers, " +
                        "backplane and the clients receiving; the harness itself allocates only a few hundred bytes per send).");
        text.AppendLine("- **CPU per delivery** = process CPU time delta (`Environment.CpuUsage`) / deliveries, in µs; **cores** = that CPU time / " +
                        "the run's wall time. **redis-server CPU** is the server's own (from `INFO cpu`), per delivery: the backplanes move " +
                        "different amounts of work into Redis.");
        text.AppendLine("- **thread-pool work items per send** = `ThreadPool.CompletedWorkItemCount` delta / sends, and **lock contentions " +
                        "per send** = `Monitor.LockContentionCount` delta / sends, whole process: each work item is a hop between threads " +
                        "and each contention a wait, both costly on this VM; they tell where CPU goes that the code's own profile does not show.");
        text.AppendLine("- Ratios are ours / Microsoft's and ours / ceiling (for rates higher is better; for latency, bytes and CPU lower is better).");
        text.AppendLine("- The **ceiling** is one server without a backplane, not a hard upper bound: that server writes to all its connections " +
                        "itself, inside the sender's `SendAsync` (SignalR's default lifetime manager), while a backplane's three servers fan " +
                        "out in parallel. Where a backplane beats the ceiling, that is why.");
        text.AppendLine("- In the max-rate cells latency is mostly queueing behind the window (latency ≈ messages in flight × recipients / " +
                        "deliveries per second), so it follows throughput; the fixed-rate cell is the latency measurement. There, one " +
                        "broadcast is 300 deliveries to in-process clients at tens of µs of CPU each on 2 cores, so the last client gets it " +
                        "several ms after the first even without a backplane; and CPU per delivery is several times the max-rate figure " +
                        "because nothing is batched (each message is its own socket write, read and thread wake-up). The same holds for " +
                        "allocated bytes per send there: they are per delivery, alike for all three subjects (the ceiling too), and far " +
                        "above the idle rate, so they are the cost of unbatched socket work of 300 in-process connections; the " +
                        "backplanes' own share is the difference between the columns.");
        text.AppendLine();
        text.AppendLine("### Summary (medians)");
        text.AppendLine();
        text.AppendLine("**ours / Microsoft** is the ratio of the two medians; **paired** takes the ratio within each repeat, where the two ran one right after the other, and gives the median of those ratios with their range: the machine's speed drifts from one repeat to the next, which moves both subjects of a repeat alike, so the paired ratio is the steadier of the two. For the fixed-rate cell both are of CPU used (lower is better).");
        text.AppendLine();
        text.Append(Summary(runs));
        text.AppendLine();

        foreach (var cell in CellsScenario.Cells.Where(c => c != Cell.PublishPath))
        {
            text.AppendLine("### " + cell.Title());
            text.AppendLine();
            text.Append(CellTable(cell, runs));
            text.AppendLine();
        }

        text.AppendLine("### " + Cell.PublishPath.Title());
        text.AppendLine();
        text.Append(PublishTable(runs));
        text.AppendLine();

        text.AppendLine("<details><summary>Every run, in order (warm-ups are run 0; load = 1-minute load average when the run started)</summary>");
        text.AppendLine();
        var table = new Markdown("cell", "subject", "run", "load", "s", "sends", "deliveries / expected", "deliveries/s", "sends/s", "p50 ms", "p99 ms",
            "B/send", "CPU µs/unit", "cores", "redis µs/unit", "reads/send", "msgs/write", "lost", "dup", "reord", "misdel", "failed", "stale");
        foreach (var r in runs)
        {
            table.Row(r.Cell.ToString(), r.Subject.Label(), r.Repeat.ToString(CultureInfo.InvariantCulture), r.Load, Stats.F(r.Seconds, "0.00"),
                Stats.N(r.Sends), r.Cell == Cell.PublishPath ? "" : $"{Stats.N(r.Deliveries)} / {Stats.N(r.Expected)}",
                Stats.F(r.DeliveriesPerSecond, "#,0"), Stats.F(r.SendsPerSecond, "#,0"), Stats.F(r.P50Ms, "0.0"), Stats.F(r.P99Ms, "0.0"),
                Stats.F(r.AllocatedBytesPerSend, "#,0"), Stats.F(r.CpuMicrosPerDelivery, "0.00"), Stats.F(r.Cores, "0.00"),
                Stats.F(r.RedisCpuMicrosPerDelivery, "0.00"), Stats.F(r.ReadsPerSend, "0.000"), Stats.F(r.MessagesPerWrite, "0.00"), Stats.N(r.Lost), Stats.N(r.Duplicates), Stats.N(r.Reordered), Stats.N(r.Misdelivered),
                Stats.N(r.SendFailures + r.Hung) + (r.Stalled ? " STALLED" : "") + (r.Error is null ? "" : " " + r.Error), Stats.N(r.Stale));
        }

        text.Append(table);
        text.AppendLine();
        text.AppendLine("</details>");
        text.AppendLine();
        text.AppendLine("![Cells: throughput and p99 latency per cell](../docs/benchmark.svg)");
        return text.ToString();
    }

    private static double Median(IReadOnlyList<CellRun> runs, Cell cell, Subject subject, Func<CellRun, double> metric)
        => Stats.Median(runs.Where(r => r.Cell == cell && r.Subject == subject && !r.Warmup).Select(metric));

    private static string CellTable(Cell cell, IReadOnlyList<CellRun> runs)
    {
        var table = new Markdown("metric", Subject.Ours.Label(), Subject.Microsoft.Label(), Subject.Ceiling.Label(), "ours / Microsoft", "ours / ceiling", "better");
        void Row(string metric, Func<CellRun, double> f, string format, string better)
        {
            var o = Median(runs, cell, Subject.Ours, f);
            var m = Median(runs, cell, Subject.Microsoft, f);
            var c = Median(runs, cell, Subject.Ceiling, f);
            table.Row(metric, Stats.F(o, format), Stats.F(m, format), Stats.F(c, format), Stats.Ratio(o, m), Stats.Ratio(o, c), better);
        }

        if (cell == Cell.Direct)
        {
            Row("sends/s (= deliveries/s)", r => r.SendsPerSecond, "#,0", "higher");
        }
        else
        {
            Row("deliveries/s", r => r.DeliveriesPerSecond, "#,0", "higher");
            Row("sends/s", r => r.SendsPerSecond, "#,0", "higher");
        }

        Row("latency p50 (ms)", r => r.P50Ms, "0.0", "lower");
        Row("latency p99 (ms)", r => r.P99Ms, "0.0", "lower");
        Row("allocated bytes per send (whole process)", r => r.AllocatedBytesPerSend, "#,0", "lower");
        Row("CPU per delivery (µs, this process)", r => r.CpuMicrosPerDelivery, "0.00", "lower");
        Row("CPU used (cores, this process)", r => r.Cores, "0.00", "lower");
        Row("thread-pool work items per send (this process)", r => r.WorkItemsPerSend, "0.00", "lower");
        Row("lock contentions per send (this process)", r => r.LockContentionsPerSend, "0.000", "lower");
        Row("redis-server CPU per delivery (µs)", r => r.RedisCpuMicrosPerDelivery, "0.000", "lower");
        Row("XREADs per send (ours: all nodes, from its meters)", r => r.ReadsPerSend, "0.000", "lower");
        Row("messages per connection write (ours: dispatched / connection writes)", r => r.MessagesPerWrite, "0.00", "higher");
        table.Row([
            "lost / duplicated / reordered (all runs incl. warm-up)",
            .. Delivering.Select(s => Correctness(runs.Where(r => r.Cell == cell && r.Subject == s))),
            "", "", "all 0",
        ]);
        return table.ToString();
    }

    private static string Summary(IReadOnlyList<CellRun> runs)
    {
        var table = new Markdown("cell", "unit", "ours", "Microsoft", "ceiling", "ours / Microsoft", "paired: per repeat, median [range]", "ours / ceiling",
            "p99 ms ours / Microsoft / ceiling", "lost / dup / reordered");
        foreach (var cell in CellsScenario.Cells.Where(c => c != Cell.PublishPath))
        {
            double Rate(CellRun r) => cell == Cell.Direct ? r.SendsPerSecond : r.DeliveriesPerSecond;
            var o = Median(runs, cell, Subject.Ours, Rate);
            var m = Median(runs, cell, Subject.Microsoft, Rate);
            var c = Median(runs, cell, Subject.Ceiling, Rate);
            var p99 = string.Join(" / ", Delivering.Select(s => Stats.F(Median(runs, cell, s, r => r.P99Ms), "0.0")));
            var correctness = string.Join(" · ", Delivering.Select(s => Correctness(runs.Where(r => r.Cell == cell && r.Subject == s))));
            if (cell == Cell.FixedRate)
            {
                // Throughput is fixed here; what differs is the CPU it costs.
                o = Median(runs, cell, Subject.Ours, r => r.Cores);
                m = Median(runs, cell, Subject.Microsoft, r => r.Cores);
                c = Median(runs, cell, Subject.Ceiling, r => r.Cores);
                table.Row(cell.Title(), "CPU cores used (lower is better)", Stats.F(o, "0.00"), Stats.F(m, "0.00"), Stats.F(c, "0.00"),
                    Stats.Ratio(o, m), Paired(runs, cell, r => r.Cores), Stats.Ratio(o, c), p99, correctness);
                continue;
            }

            table.Row(cell.Title(), cell == Cell.Direct ? "sends/s" : "deliveries/s", Stats.F(o, "#,0"), Stats.F(m, "#,0"), Stats.F(c, "#,0"),
                Stats.Ratio(o, m), Paired(runs, cell, Rate), Stats.Ratio(o, c), p99, correctness);
        }

        var po = Median(runs, Cell.PublishPath, Subject.Ours, r => r.SendsPerSecond);
        var pm = Median(runs, Cell.PublishPath, Subject.Microsoft, r => r.SendsPerSecond);
        var pc = Median(runs, Cell.PublishPath, Subject.Ceiling, r => r.SendsPerSecond);
        var x = Median(runs, Cell.PublishPath, Subject.RedisBenchmarkXadd, r => r.SendsPerSecond);
        var p = Median(runs, Cell.PublishPath, Subject.RedisBenchmarkPublish, r => r.SendsPerSecond);
        table.Row(Cell.PublishPath.Title(), "sends/s of one node", $"{Stats.F(po, "#,0")} ({Percent(po, x)} of redis-benchmark XADD)",
            $"{Stats.F(pm, "#,0")} ({Percent(pm, p)} of redis-benchmark PUBLISH)", Stats.F(pc, "#,0"), Stats.Ratio(po, pm),
            Paired(runs, Cell.PublishPath, r => r.SendsPerSecond), Stats.Ratio(po, pc), "", "");
        return table.ToString();
    }

    /// <summary>ours / Microsoft's within each measured repeat (the two run one right after the other), as the median over
    /// the repeats and their range: "1.23× [1.10–1.40×]". A machine that speeds up or slows down from one repeat to the
    /// next moves both subjects of a repeat alike, which this ratio cancels and the ratio of the two medians does not.</summary>
    internal static string Paired(IReadOnlyList<CellRun> runs, Cell cell, Func<CellRun, double> metric)
    {
        var ratios = OursOverMicrosoftByRepeat(runs.Where(r => r.Cell == cell), metric).Values.ToList();
        return ratios.Count == 0
            ? "n/a"
            : $"{Stats.Ratio(Stats.Median(ratios), 1)} [{ratios.Min().ToString("0.00", CultureInfo.InvariantCulture)}–{Stats.Ratio(ratios.Max(), 1)}]";
    }

    /// <summary>Per measured repeat in which both ran (in <paramref name="runs"/>, all of one cell and setup): ours /
    /// Microsoft's <paramref name="metric"/>, the two runs of a repeat having run one right after the other. Used by the
    /// cells' paired ratio and the sweep's paired flatness.</summary>
    internal static Dictionary<int, double> OursOverMicrosoftByRepeat(IEnumerable<CellRun> runs, Func<CellRun, double> metric)
        => OursAgainstMicrosoftByRepeat(runs, (ours, microsoft) => metric(ours) / metric(microsoft));

    /// <summary>Per measured repeat in which both ran (in <paramref name="runs"/>, all of one cell and setup):
    /// <paramref name="pair"/> of ours' run and Microsoft's, where it is finite.</summary>
    internal static Dictionary<int, double> OursAgainstMicrosoftByRepeat(IEnumerable<CellRun> runs, Func<CellRun, CellRun, double> pair)
    {
        var measured = runs.Where(r => !r.Warmup).ToList();
        var byRepeat = new Dictionary<int, double>();
        foreach (var ours in measured.Where(r => r.Subject == Subject.Ours))
        {
            if (measured.FirstOrDefault(r => r.Subject == Subject.Microsoft && r.Repeat == ours.Repeat) is { } microsoft
                && pair(ours, microsoft) is var value && double.IsFinite(value))
            {
                byRepeat[ours.Repeat] = value;
            }
        }
        return byRepeat;
    }

    private static string PublishTable(IReadOnlyList<CellRun> runs)
    {
        const Cell cell = Cell.PublishPath;
        var o = Median(runs, cell, Subject.Ours, r => r.SendsPerSecond);
        var m = Median(runs, cell, Subject.Microsoft, r => r.SendsPerSecond);
        var x = Median(runs, cell, Subject.RedisBenchmarkXadd, r => r.SendsPerSecond);
        var p = Median(runs, cell, Subject.RedisBenchmarkPublish, r => r.SendsPerSecond);
        var c = Median(runs, cell, Subject.Ceiling, r => r.SendsPerSecond);
        var table = new Markdown("metric", "ours (XADD through the adapter)", "Microsoft (PUBLISH through the adapter)", "no backplane (nothing sent)", "ours / Microsoft");
        table.Row("sends/s of one node (appends/s, publishes/s)", Stats.F(o, "#,0"), Stats.F(m, "#,0"), Stats.F(c, "#,0"), Stats.Ratio(o, m));
        table.Row("redis-benchmark on the same server, requests/s", "XADD: " + Stats.F(x, "#,0"), "PUBLISH: " + Stats.F(p, "#,0"), "", "");
        table.Row("**node's rate as % of redis-benchmark**", Percent(o, x), Percent(m, p), Percent(c, x) + " of XADD", "");
        void Row(string metric, Func<CellRun, double> f, string format)
        {
            var a = Median(runs, cell, Subject.Ours, f);
            var b = Median(runs, cell, Subject.Microsoft, f);
            table.Row(metric, Stats.F(a, format), Stats.F(b, format), Stats.F(Median(runs, cell, Subject.Ceiling, f), format), Stats.Ratio(a, b));
        }

        Row("allocated bytes per send (whole process)", r => r.AllocatedBytesPerSend, "#,0");
        Row("CPU per send (µs, this process)", r => r.CpuMicrosPerDelivery, "0.00");
        Row("CPU used (cores, this process)", r => r.Cores, "0.00");
        Row("thread-pool work items per send (this process)", r => r.WorkItemsPerSend, "0.00");
        Row("redis-server CPU per send (µs)", r => r.RedisCpuMicrosPerDelivery, "0.000");
        table.Row("redis-server CPU per request in redis-benchmark (µs)",
            "XADD: " + Stats.F(Median(runs, cell, Subject.RedisBenchmarkXadd, r => r.RedisCpuMicrosPerDelivery), "0.000"),
            "PUBLISH: " + Stats.F(Median(runs, cell, Subject.RedisBenchmarkPublish, r => r.RedisCpuMicrosPerDelivery), "0.000"), "", "");
        string Failed(Subject subject) => Stats.N(runs.Where(r => r.Cell == cell && r.Subject == subject).Sum(r => r.SendFailures + r.Hung));
        table.Row("failed sends (all runs)", Failed(Subject.Ours), Failed(Subject.Microsoft), Failed(Subject.Ceiling), "");
        var errors = runs.Where(r => r.Subject is Subject.RedisBenchmarkXadd or Subject.RedisBenchmarkPublish && r.Error is not null).Select(r => r.Error).Distinct().ToList();
        var text = new StringBuilder(table.ToString());
        if (errors.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("redis-benchmark failed: " + string.Join("; ", errors));
        }

        text.AppendLine();
        text.AppendLine("The node's rate includes everything a send costs in the adapter (serializing the hub message, the outbox and the " +
                        "append script for ours; the publish for Microsoft's) and its own reader getting the entry back; redis-benchmark " +
                        "sends a bare command from 50 connections, 16 pipelined each, so it is the server's ceiling for that command, " +
                        "not a like-for-like client. The column without a backplane is the same node and harness with SignalR's own " +
                        "lifetime manager, which sends nothing (no connection): the harness's and SignalR's part of every send, a floor " +
                        "neither backplane can go under.");
        return text.ToString();
    }

    /// <summary>The warning block a report opens with when some runs lost, duplicated, reordered or misdelivered
    /// messages, or failed sends; nothing when every run was correct.</summary>
    public static void AppendViolations(StringBuilder text, IReadOnlyList<string> violations)
    {
        if (violations.Count > 0)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"> **CORRECTNESS FAILURES ({violations.Count} runs)**: lost, duplicated, reordered or misdelivered messages, or failed sends:");
            text.AppendLine(">");
            foreach (var violation in violations)
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"> - {violation}");
            }

            text.AppendLine();
        }
    }

    public static string Percent(double value, double reference)
        => double.IsNaN(value) || double.IsNaN(reference) || reference == 0 ? "n/a" : (100 * value / reference).ToString("0", CultureInfo.InvariantCulture) + " %";

    public static string Correctness(IEnumerable<CellRun> runs)
    {
        var list = runs.ToList();
        var lost = list.Sum(r => r.Lost);
        var duplicated = list.Sum(r => r.Duplicates);
        var reordered = list.Sum(r => r.Reordered);
        var other = list.Sum(r => r.Misdelivered + r.SendFailures + r.Hung) + list.Count(r => r.Stalled);
        var cell = $"{Stats.N(lost)} / {Stats.N(duplicated)} / {Stats.N(reordered)}";
        if (other > 0)
        {
            cell += $" (+{Stats.N(other)} misdelivered/failed/stalled)";
        }

        return lost + duplicated + reordered + other > 0 ? $"**{cell}**" : cell;
    }

    /// <summary>Per cell: throughput bars (ours, Microsoft, ceiling; the publish path with redis-benchmark) and p99 bars,
    /// each cell scaled on its own, with the ratios written next to the cell's title.</summary>
    public static string Svg(CellsSettings settings, IReadOnlyList<CellRun> runs)
    {
        const int width = 1000;
        const int leftX = 10;
        const int leftWidth = 470;
        const int rightX = 610;
        const int rightWidth = 290;
        const int barHeight = 14;
        const int barStep = 18;
        const int top = 84;
        var colors = new Dictionary<Subject, string>
        {
            [Subject.Ours] = "#1f77b4",
            [Subject.Microsoft] = "#ff7f0e",
            [Subject.Ceiling] = "#8c8c8c",
            [Subject.RedisBenchmarkXadd] = "#2ca02c",
            [Subject.RedisBenchmarkPublish] = "#98df8a",
        };

        var rows = new List<(string Title, string Note, (Subject Subject, double Value)[] Throughput, (Subject Subject, double Value)[] P99)>();
        foreach (var cell in CellsScenario.Cells)
        {
            if (cell == Cell.PublishPath)
            {
                var bars = new[] { Subject.Ours, Subject.RedisBenchmarkXadd, Subject.Microsoft, Subject.RedisBenchmarkPublish, Subject.Ceiling }
                    .Select(s => (s, Median(runs, cell, s, r => r.SendsPerSecond))).ToArray();
                rows.Add((cell.Title() + " (sends/s of one node vs redis-benchmark; grey: no backplane, nothing sent)",
                    $"ours = {Percent(bars[0].Item2, bars[1].Item2)} of XADD, Microsoft = {Percent(bars[2].Item2, bars[3].Item2)} of PUBLISH, no backplane = {Percent(bars[4].Item2, bars[1].Item2)} of XADD",
                    bars, []));
                continue;
            }

            double Throughput(CellRun r) => cell == Cell.Direct ? r.SendsPerSecond : r.DeliveriesPerSecond;
            var throughput = Delivering.Select(s => (s, Median(runs, cell, s, Throughput))).ToArray();
            var p99 = Delivering.Select(s => (s, Median(runs, cell, s, r => r.P99Ms))).ToArray();
            var note = cell == Cell.FixedRate
                ? "CPU cores ours / Microsoft " + Stats.Ratio(Median(runs, cell, Subject.Ours, r => r.Cores), Median(runs, cell, Subject.Microsoft, r => r.Cores)) +
                  ", p99 ours / Microsoft " + Stats.Ratio(p99[0].Item2, p99[1].Item2)
                : "ours / Microsoft " + Stats.Ratio(throughput[0].Item2, throughput[1].Item2) + ", ours / ceiling " + Stats.Ratio(throughput[0].Item2, throughput[2].Item2);
            rows.Add((cell.Title() + (cell == Cell.Direct ? " (sends/s)" : " (deliveries/s)"), note, throughput, p99));
        }

        var rowHeights = rows.Select(r => 26 + (Math.Max(r.Throughput.Length, r.P99.Length) * barStep) + 8).ToList();
        var height = top + rowHeights.Sum() + 30;
        var svg = new StringBuilder();
        svg.AppendLine(CultureInfo.InvariantCulture, $"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">""");
        svg.AppendLine(CultureInfo.InvariantCulture, $"""<rect width="{width}" height="{height}" fill="white"/>""");
        svg.AppendLine(CultureInfo.InvariantCulture,
            $"""<text x="10" y="24" font-size="16" font-weight="bold">SignalR backplanes on one Redis: {settings.Servers} servers × {settings.ClientsPerServer} WebSocket clients; ceiling: 1 server × {settings.TotalClients}, no backplane</text>""");
        var legendX = 10;
        foreach (var (subject, color) in colors)
        {
            svg.AppendLine(CultureInfo.InvariantCulture, $"""<rect x="{legendX}" y="36" width="12" height="12" fill="{color}"/>""");
            svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{legendX + 16}" y="46">{Escape(subject.Label())}</text>""");
            legendX += 36 + (int)(subject.Label().Length * 6.6);
        }

        svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{leftX}" y="{top - 10}" font-weight="bold" fill="#333333">throughput, median of {settings.Repeats} (higher is better)</text>""");
        svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{rightX}" y="{top - 10}" font-weight="bold" fill="#333333">latency p99, ms, median of {settings.Repeats} (lower is better)</text>""");
        var y = top;
        for (var i = 0; i < rows.Count; i++)
        {
            var (title, note, throughput, p99) = rows[i];
            svg.AppendLine(CultureInfo.InvariantCulture, $"""<line x1="10" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#cccccc"/>""");
            svg.AppendLine(CultureInfo.InvariantCulture,
                $"""<text x="{leftX}" y="{y + 17}"><tspan font-weight="bold">{Escape(title)}</tspan><tspan dx="12" fill="#555555">{Escape(note)}</tspan></text>""");
            Bars(svg, throughput, leftX, y + 26, leftWidth, "#,0");
            if (p99.Length > 0)
            {
                Bars(svg, p99, rightX, y + 26, rightWidth, "0.0");
            }

            y += rowHeights[i];
        }

        svg.AppendLine(CultureInfo.InvariantCulture,
            $"""<text x="10" y="{height - 12}" fill="#555555" font-size="11">Each cell is scaled on its own. Written by: dotnet run -c Release --project benchmarks/Benchmarks -- all (figures and method: benchmarks/RESULTS.md).</text>""");
        svg.AppendLine("</svg>");
        return svg.ToString();

        void Bars(StringBuilder target, (Subject Subject, double Value)[] bars, int x, int barsTop, int maxWidth, string format)
        {
            var max = bars.Select(b => b.Value).Where(v => !double.IsNaN(v)).DefaultIfEmpty(0).Max();
            for (var b = 0; b < bars.Length; b++)
            {
                var (subject, value) = bars[b];
                var barY = barsTop + (b * barStep);
                var barWidth = double.IsNaN(value) || max <= 0 ? 0 : Math.Max(1, value / max * maxWidth);
                target.AppendLine(CultureInfo.InvariantCulture,
                    $"""<rect x="{x}" y="{barY}" width="{barWidth:0.0}" height="{barHeight}" fill="{colors[subject]}"><title>{Escape(subject.Label())}: {Stats.F(value, format)}</title></rect>""");
                target.AppendLine(CultureInfo.InvariantCulture,
                    $"""<text x="{x + barWidth + 4:0.0}" y="{barY + barHeight - 3}">{Stats.F(value, format)}</text>""");
            }
        }
    }

    public static string Escape(string text) => SecurityElement.Escape(text) ?? "";
}
