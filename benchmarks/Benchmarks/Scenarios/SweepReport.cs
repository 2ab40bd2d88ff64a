using System.Globalization;
using System.Text;
using Benchmarks.Infrastructure;

namespace Benchmarks.Scenarios;

/// <summary>The sweep's Markdown section and its plot (a hand-written SVG, like <see cref="CellsReport.Svg"/>).</summary>
internal static class SweepReport
{
    private static readonly Subject[] Backplanes = [Subject.Ours, Subject.Microsoft];

    public static string Markdown(SweepSettings settings, IReadOnlyList<SweepSetup> setup, WarmupOutcome warmup, IReadOnlyList<SweepRun> runs, IReadOnlyList<string> violations, TimeSpan elapsed)
    {
        var nodeCounts = settings.NodeCounts;
        var (first, last) = (nodeCounts[0], nodeCounts[^1]);
        var run = settings.Run;
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"## Sweep: {SweepScenario.List(nodeCounts)} nodes per backplane");
        text.AppendLine();
        CellsReport.AppendViolations(text, violations);

        var order = SweepScenario.List(nodeCounts);
        var reverse = SweepScenario.List([.. Enumerable.Reverse(nodeCounts)]);
        text.AppendLine(
            $"Does a send cost more as nodes are added? At each node count N ({order}), one cluster per backplane, **ours** and " +
            $"**Microsoft's**, each with N nodes and **{settings.TotalClients} WebSocket clients in all** ({settings.TotalClients} / N per node, " +
            $"the same total at every N). All {2 * nodeCounts.Count} clusters are up for the whole sweep on one private `redis-server` (no " +
            "persistence; each cluster has its own stream / channel prefix) and run **interleaved**: per repeat, cell by cell, every " +
            $"node count runs the cell for both backplanes, the node counts in the order {order} and ours first on odd repeats, {reverse} and " +
            "Microsoft's first on even ones (so a cell's node counts run seconds apart, not a pass of the other cells apart). Everything else is as in the cells scenario: the same process, clients and measurements; " +
            $"every message comes from node 0's `IHubContext<BenchHub>` (64 B), round-robin over its targets with at most {run.FanoutWindow} " +
            "in flight (a slot frees when every recipient has it), and every client checks it gets each message addressed to it once, " +
            "in order, and only those.");
        text.AppendLine();
        text.AppendLine("The cells (**unit: deliveries/s**: messages received by clients per second, from the first send to the last arrival):");
        text.AppendLine();
        text.AppendLine(
            $"- **{Cell.Direct.SweepTitle()}**: `Clients.Client(id)` round-robin over the same number of clients at every node count, " +
            $"{settings.Addressed}, spread evenly over nodes 1 … N−1 (" +
            string.Join(", ", nodeCounts.Select(n => string.Create(CultureInfo.InvariantCulture, $"{settings.Addressed / (n - 1)} per node at {n} nodes"))) +
            "): the sends are the same, only the number of nodes they cross changes. (Addressing every client of nodes 1 … N−1 instead " +
            "would spread them over more connections as nodes are added, each connection's writes carrying fewer messages.) " +
            "One delivery per send: deliveries/s = sends/s.");
        text.AppendLine(
            $"- **{Cell.LocalGroups.SweepTitle()}**: {LocalGroups(settings)} groups of {run.GroupSize} at every node count, each group's " +
            "members all on the same node (consecutive clients of that node), never the sender's; the groups are dealt to nodes 1 … N−1 " +
            $"in turn. {run.GroupSize} deliveries per send.");
        text.AppendLine(
            $"- **{Cell.Groups.SweepTitle()}**: as the cells' group cell: {settings.TotalClients / run.GroupSize} groups of {run.GroupSize}, " +
            $"client *i* in group *i* mod {settings.TotalClients / run.GroupSize}, so " +
            (nodeCounts.All(n => SpreadNodes(settings, n) == n)
                ? "every group has members on every node"
                : "every group has members on at least " + string.Join(", ", nodeCounts.Select(n => string.Create(CultureInfo.InvariantCulture, $"{SpreadNodes(settings, n)} of {n} nodes")))) +
            $". {run.GroupSize} deliveries per send.");
        text.AppendLine(
            $"- **{Cell.DirectOneNode.SweepTitle()}**: as cell 1, but all {settings.OneNodeAddressed} addressed clients are on node 1 at " +
            "every node count (the first of its clients), so one node receives everything and the others hold no target: what a " +
            "packet addressed to one node costs the nodes that do not hold it, with the receiving work the same at every node count. " +
            "Cell 1 adds to that the spreading of the same sends over more receiving nodes. One delivery per send.");
        text.AppendLine();
        text.AppendLine(
            $"Runs send for {run.MaxRateDuration.TotalSeconds:0.#} s and then wait until everything sent has arrived. " +
            (run.WarmupDuration > TimeSpan.Zero
                ? $"Warm-up: one run of {run.WarmupDuration.TotalSeconds:0.#} s per cell, backplane and node count in each pass (checked for correctness, not counted); {warmup.Describe()}. Then "
                : "No warm-up; ") +
            $"**{run.Repeats} measured run(s)** each; tables show the **median**. Allocated bytes per send and CPU per delivery are of " +
            "the whole process (servers and clients; the idle clusters' keep-alives included, the same for every run), as in the cells. " +
            $"**Flatness** = ours at {last} nodes / ours at {first} nodes: 1.00× means a send costs the same however many nodes there " +
            $"are; below 1 it costs more with more nodes. All nodes share one process and 2 cores: more nodes means more receive " +
            "loops and connections to spread the same work over, not more CPU, so compare ours' flatness with Microsoft's rather than " +
            "with 1.00×; the paired figure does that within each repeat, so that the machine's drift between node counts, which " +
            $"moves both backplanes alike, drops out. Sizes were chosen to keep the sweep within ~5 minutes on 2 cores; this section took {elapsed.TotalSeconds:0} s.");
        text.AppendLine();
        text.AppendLine("Setup (clients connect 16 at a time, then join their groups one at a time through their own node): " + string.Join("; ", setup.Select(s =>
            string.Create(CultureInfo.InvariantCulture,
                $"{s.Nodes} nodes, {s.Subject.Label()}: {s.Clients} clients connected in {s.ConnectSeconds:0.0} s (started and probed in {s.StartSeconds:0.0} s), groups joined in {s.JoinSeconds:0.0} s"))) + ".");
        text.AppendLine();

        foreach (var cell in SweepScenario.Cells)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"### {cell.SweepTitle()} (deliveries/s)");
            text.AppendLine();
            text.Append(CellTable(settings, cell, runs));
            text.AppendLine();
            var ours = Median(runs, cell, Subject.Ours, last, Rate) / Median(runs, cell, Subject.Ours, first, Rate);
            var microsoft = Median(runs, cell, Subject.Microsoft, last, Rate) / Median(runs, cell, Subject.Microsoft, first, Rate);
            text.AppendLine(CultureInfo.InvariantCulture,
                $"Flatness: ours at {last} nodes / ours at {first} nodes = **{Factor(ours)}** (Microsoft's at {last} / at {first}: {Factor(microsoft)}); " +
                $"against Microsoft's, paired within each repeat: {Factor(RelativeFlatness(runs, cell, first, last))}.");
            text.AppendLine();
            var paired = AddedTimeOursLessMicrosofts(runs, cell, first, last);
            text.AppendLine(
                $"Added per delivery from {first} to {last} nodes: time (1 / rate) ours {Micros(AddedTime(runs, cell, Subject.Ours, first, last))}, " +
                $"Microsoft's {Micros(AddedTime(runs, cell, Subject.Microsoft, first, last))}; ours' addition less Microsoft's, paired within each repeat: " +
                (paired.Count == 0 ? "n/a" : $"{Micros(Stats.Median(paired))} [{Micros(paired.Min())} to {Micros(paired.Max())}]") +
                $"; CPU ours {Micros(AddedCpu(runs, cell, Subject.Ours, first, last))}, Microsoft's {Micros(AddedCpu(runs, cell, Subject.Microsoft, first, last))}.");
            text.AppendLine();
        }

        text.AppendLine("<details><summary>Every run, in order (warm-ups are run 0; load = 1-minute load average when the run started)</summary>");
        text.AppendLine();
        var table = new Markdown("nodes", "cell", "backplane", "run", "load", "s", "sends", "deliveries / expected", "deliveries/s", "p50 ms", "p99 ms",
            "B/send", "CPU µs/delivery", "cores", "redis µs/delivery", "reads/send", "msgs/write", "lost", "dup", "reord", "misdel", "failed", "stale");
        foreach (var (nodes, r) in runs)
        {
            table.Row(nodes.ToString(CultureInfo.InvariantCulture), r.Cell.SweepName(), r.Subject.Label(), r.Repeat.ToString(CultureInfo.InvariantCulture), r.Load,
                Stats.F(r.Seconds, "0.00"), Stats.N(r.Sends), $"{Stats.N(r.Deliveries)} / {Stats.N(r.Expected)}", Stats.F(r.DeliveriesPerSecond, "#,0"),
                Stats.F(r.P50Ms, "0.0"), Stats.F(r.P99Ms, "0.0"), Stats.F(r.AllocatedBytesPerSend, "#,0"), Stats.F(r.CpuMicrosPerDelivery, "0.00"),
                Stats.F(r.Cores, "0.00"), Stats.F(r.RedisCpuMicrosPerDelivery, "0.00"), Stats.F(r.ReadsPerSend, "0.000"), Stats.F(r.MessagesPerWrite, "0.00"),
                Stats.N(r.Lost), Stats.N(r.Duplicates), Stats.N(r.Reordered),
                Stats.N(r.Misdelivered), Stats.N(r.SendFailures + r.Hung) + (r.Stalled ? " STALLED" : "") + (r.Error is null ? "" : " " + r.Error), Stats.N(r.Stale));
        }

        text.Append(table);
        text.AppendLine();
        text.AppendLine("</details>");
        text.AppendLine();
        text.AppendLine("![Sweep: deliveries/s per cell against the node count, ours and Microsoft's](../docs/sweep.svg)");
        return text.ToString();
    }

    private static double Rate(CellRun run) => run.DeliveriesPerSecond;

    /// <summary>Ours' flatness against Microsoft's with the machine's drift taken out: per repeat, ours / Microsoft's at
    /// <paramref name="last"/> nodes over ours / Microsoft's at <paramref name="first"/> (the two backplanes at one node
    /// count run one right after the other; the node counts are further apart), the median over the repeats. 1.00×: adding
    /// nodes costs ours what it costs Microsoft's.</summary>
    internal static double RelativeFlatness(IReadOnlyList<SweepRun> runs, Cell cell, int first, int last)
        => Stats.Median(PairedAcrossNodeCounts(runs, cell, first, last, (ours, microsoft) => Rate(ours) / Rate(microsoft), (atLast, atFirst) => atLast / atFirst));

    /// <summary>Per measured repeat in which both backplanes ran at both node counts, in repeat order: <paramref name="pair"/>
    /// of ours' run and Microsoft's at <paramref name="last"/> nodes, <paramref name="across"/> the same at
    /// <paramref name="first"/>; the finite results.</summary>
    private static List<double> PairedAcrossNodeCounts(
        IReadOnlyList<SweepRun> runs, Cell cell, int first, int last, Func<CellRun, CellRun, double> pair, Func<double, double, double> across)
    {
        Dictionary<int, double> At(int nodes)
            => CellsReport.OursAgainstMicrosoftByRepeat(runs.Where(r => r.Nodes == nodes && r.Run.Cell == cell).Select(r => r.Run), pair);

        var atFirst = At(first);
        return [.. At(last).Where(l => atFirst.ContainsKey(l.Key)).OrderBy(l => l.Key).Select(l => across(l.Value, atFirst[l.Key])).Where(double.IsFinite)];
    }

    /// <summary>What going from <paramref name="first"/> to <paramref name="last"/> nodes adds to the time a delivery takes
    /// (1 / rate: the machine's time per delivery, in µs), from the medians. The flatness is the ratio of the two times,
    /// so the same addition makes a backplane that is faster at <paramref name="first"/> nodes look less flat; this is
    /// the addition itself.</summary>
    internal static double AddedTime(IReadOnlyList<SweepRun> runs, Cell cell, Subject subject, int first, int last)
        => 1e6 / Median(runs, cell, subject, last, Rate) - 1e6 / Median(runs, cell, subject, first, Rate);

    /// <summary>What going from <paramref name="first"/> to <paramref name="last"/> nodes adds to the process CPU per
    /// delivery (µs), from the medians.</summary>
    internal static double AddedCpu(IReadOnlyList<SweepRun> runs, Cell cell, Subject subject, int first, int last)
        => Median(runs, cell, subject, last, r => r.CpuMicrosPerDelivery) - Median(runs, cell, subject, first, r => r.CpuMicrosPerDelivery);

    /// <summary>Per measured repeat in which both backplanes ran at both node counts: ours' added time per delivery (see
    /// <see cref="AddedTime"/>) less Microsoft's, each from that repeat's runs (below 0: adding nodes costs ours less).</summary>
    internal static List<double> AddedTimeOursLessMicrosofts(IReadOnlyList<SweepRun> runs, Cell cell, int first, int last)
        => PairedAcrossNodeCounts(runs, cell, first, last, (ours, microsoft) => 1e6 / Rate(ours) - 1e6 / Rate(microsoft), (atLast, atFirst) => atLast - atFirst);

    private static string Micros(double value) => double.IsNaN(value) ? "n/a" : value.ToString("+#,0.00;−#,0.00;0.00", CultureInfo.InvariantCulture) + " µs";

    private static string Factor(double value) => Stats.F(value, "0.00") + (double.IsNaN(value) ? "" : "×");

    private static double Median(IReadOnlyList<SweepRun> runs, Cell cell, Subject subject, int nodes, Func<CellRun, double> metric)
        => Stats.Median(runs.Where(r => r.Nodes == nodes && r.Run.Cell == cell && r.Run.Subject == subject && !r.Run.Warmup).Select(r => metric(r.Run)));

    /// <summary>Groups of the one-node cell at <paramref name="nodes"/> nodes (as <see cref="CellDeployment"/> forms them).</summary>
    private static int LocalGroups(SweepSettings settings) => Math.Max(1, settings.Addressed / settings.Run.GroupSize);

    /// <summary>The fewest nodes any group of the spread cell has members on, at <paramref name="nodes"/> nodes.</summary>
    private static int SpreadNodes(SweepSettings settings, int nodes)
    {
        var perNode = settings.TotalClients / nodes;
        var groups = Math.Max(1, settings.TotalClients / settings.Run.GroupSize);
        return Enumerable.Range(0, groups)
            .Min(g => Enumerable.Range(0, settings.TotalClients).Where(i => i % groups == g).Select(i => i / perNode).Distinct().Count());
    }

    private static string CellTable(SweepSettings settings, Cell cell, IReadOnlyList<SweepRun> runs)
    {
        var table = new Markdown("nodes", "clients per node", "ours", "Microsoft", "ours / Microsoft", "ours allocated B/send", "Microsoft allocated B/send",
            "ours CPU µs/delivery", "Microsoft CPU µs/delivery", "thread-pool work items per send, ours / Microsoft",
            "ours: XREADs per send (all nodes) / messages per connection write", "ours p50 / p99 ms", "Microsoft p50 / p99 ms", "lost / dup / reordered, ours · Microsoft");
        foreach (var nodes in settings.NodeCounts)
        {
            double M(Subject subject, Func<CellRun, double> metric) => Median(runs, cell, subject, nodes, metric);
            string Latency(Subject subject) => $"{Stats.F(M(subject, r => r.P50Ms), "0.0")} / {Stats.F(M(subject, r => r.P99Ms), "0.0")}";
            var (o, m) = (M(Subject.Ours, Rate), M(Subject.Microsoft, Rate));
            table.Row(
                nodes.ToString(CultureInfo.InvariantCulture),
                (settings.TotalClients / nodes).ToString(CultureInfo.InvariantCulture),
                Stats.F(o, "#,0"),
                Stats.F(m, "#,0"),
                Stats.Ratio(o, m),
                Stats.F(M(Subject.Ours, r => r.AllocatedBytesPerSend), "#,0"),
                Stats.F(M(Subject.Microsoft, r => r.AllocatedBytesPerSend), "#,0"),
                Stats.F(M(Subject.Ours, r => r.CpuMicrosPerDelivery), "0.00"),
                Stats.F(M(Subject.Microsoft, r => r.CpuMicrosPerDelivery), "0.00"),
                $"{Stats.F(M(Subject.Ours, r => r.WorkItemsPerSend), "0.00")} / {Stats.F(M(Subject.Microsoft, r => r.WorkItemsPerSend), "0.00")}",
                $"{Stats.F(M(Subject.Ours, r => r.ReadsPerSend), "0.000")} / {Stats.F(M(Subject.Ours, r => r.MessagesPerWrite), "0.00")}",
                Latency(Subject.Ours),
                Latency(Subject.Microsoft),
                string.Join(" · ", Backplanes.Select(s => CellsReport.Correctness(runs.Where(r => r.Nodes == nodes && r.Run.Cell == cell && r.Run.Subject == s).Select(r => r.Run)))));
        }

        return table.ToString();
    }

    /// <summary>One panel per cell: deliveries/s (median) against the node count, a line per backplane, each panel scaled
    /// on its own from zero, with the flatness of each backplane in the panel's title.</summary>
    public static string Svg(SweepSettings settings, IReadOnlyList<SweepRun> runs)
    {
        const int panelWidth = 320;
        const int panelGap = 24;
        // Room between the axes and the first and last node count, for the value labels.
        const int inset = 26;
        const int left = 10;
        const int top = 70;
        const int plotLeft = 62;
        const int plotRight = 24;
        const int plotTop = 52;
        const int plotHeight = 220;
        var colors = new Dictionary<Subject, string> { [Subject.Ours] = "#1f77b4", [Subject.Microsoft] = "#ff7f0e" };
        var cells = SweepScenario.Cells;
        var nodeCounts = settings.NodeCounts;
        var (first, last) = (nodeCounts[0], nodeCounts[^1]);
        var width = (2 * left) + (cells.Count * panelWidth) + ((cells.Count - 1) * panelGap);
        var height = top + plotTop + plotHeight + 70;
        var svg = new StringBuilder();
        svg.AppendLine(CultureInfo.InvariantCulture, $"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">""");
        svg.AppendLine(CultureInfo.InvariantCulture, $"""<rect width="{width}" height="{height}" fill="white"/>""");
        svg.AppendLine(CultureInfo.InvariantCulture,
            $"""<text x="{left}" y="24" font-size="16" font-weight="bold">Node-count sweep: deliveries/s against nodes per backplane, {settings.TotalClients} WebSocket clients in all, median of {settings.Run.Repeats}</text>""");
        var legendX = left;
        foreach (var (subject, color) in colors)
        {
            svg.AppendLine(CultureInfo.InvariantCulture, $"""<line x1="{legendX}" y1="42" x2="{legendX + 22}" y2="42" stroke="{color}" stroke-width="2.5"/>""");
            svg.AppendLine(CultureInfo.InvariantCulture, $"""<circle cx="{legendX + 11}" cy="42" r="3.5" fill="{color}"/>""");
            svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{legendX + 28}" y="46">{CellsReport.Escape(subject.Label())}</text>""");
            legendX += 50 + (int)(subject.Label().Length * 6.6);
        }

        for (var c = 0; c < cells.Count; c++)
        {
            var cell = cells[c];
            var x0 = left + (c * (panelWidth + panelGap));
            var series = colors.Keys.Select(s => (Subject: s, Values: nodeCounts.Select(n => Median(runs, cell, s, n, Rate)).ToArray())).ToList();
            // 10 % headroom above the highest point for its label.
            var (max, ticks) = NiceCeiling(1.1 * series.SelectMany(s => s.Values).Where(v => !double.IsNaN(v)).DefaultIfEmpty(0).Max());
            var plotX = x0 + plotLeft;
            var plotWidth = panelWidth - plotLeft - plotRight;
            var plotY = top + plotTop;
            double X(int nodes) => last == first ? plotX + (plotWidth / 2.0) : plotX + inset + ((nodes - first) / (double)(last - first) * (plotWidth - (2 * inset)));
            double Y(double value) => plotY + plotHeight - (max <= 0 ? 0 : value / max * plotHeight);

            svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{x0}" y="{top}" font-weight="bold">{CellsReport.Escape(cell.SweepTitle())}</text>""");
            var flatness = string.Join(", ", series.Select(s => $"{(s.Subject == Subject.Ours ? "ours" : "Microsoft")} {Factor(s.Values[^1] / s.Values[0])}"));
            svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{x0}" y="{top + 18}" fill="#555555">{CellsReport.Escape($"{last} nodes / {first} nodes: {flatness}")}</text>""");
            svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{x0}" y="{top + 36}" fill="#555555">deliveries/s (higher is better)</text>""");
            for (var tick = 0; tick <= ticks; tick++)
            {
                var value = max * tick / ticks;
                var y = Y(value);
                svg.AppendLine(CultureInfo.InvariantCulture, $"""<line x1="{plotX}" y1="{y:0.0}" x2="{plotX + plotWidth}" y2="{y:0.0}" stroke="{(tick == 0 ? "#888888" : "#e0e0e0")}"/>""");
                svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{plotX - 6}" y="{y + 4:0.0}" text-anchor="end" fill="#555555" font-size="11">{Stats.F(value, "#,0")}</text>""");
            }

            foreach (var nodes in nodeCounts)
            {
                svg.AppendLine(CultureInfo.InvariantCulture, $"""<line x1="{X(nodes):0.0}" y1="{plotY + plotHeight}" x2="{X(nodes):0.0}" y2="{plotY + plotHeight + 5}" stroke="#888888"/>""");
                svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{X(nodes):0.0}" y="{plotY + plotHeight + 18}" text-anchor="middle">{nodes}</text>""");
            }

            svg.AppendLine(CultureInfo.InvariantCulture, $"""<text x="{plotX + (plotWidth / 2)}" y="{plotY + plotHeight + 36}" text-anchor="middle" fill="#555555">nodes</text>""");
            foreach (var (subject, values) in series)
            {
                var other = series.First(s => s.Subject != subject).Values;
                var points = nodeCounts.Select((n, i) => (X: X(n), Value: values[i], Above: double.IsNaN(other[i]) || values[i] >= other[i]))
                    .Where(p => !double.IsNaN(p.Value)).ToList();
                if (points.Count > 1)
                {
                    svg.AppendLine(CultureInfo.InvariantCulture,
                        $"""<polyline points="{string.Join(' ', points.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.X:0.0},{Y(p.Value):0.0}")))}" fill="none" stroke="{colors[subject]}" stroke-width="2.5"/>""");
                }

                foreach (var (x, value, above) in points)
                {
                    // The higher of the two values at a node count is labelled above its point, the lower below.
                    var labelY = above ? Y(value) - 8 : Y(value) + 16;
                    svg.AppendLine(CultureInfo.InvariantCulture,
                        $"""<circle cx="{x:0.0}" cy="{Y(value):0.0}" r="4" fill="{colors[subject]}"><title>{CellsReport.Escape(subject.Label())}: {Stats.F(value, "#,0")} deliveries/s</title></circle>""");
                    svg.AppendLine(CultureInfo.InvariantCulture,
                        $"""<text x="{x:0.0}" y="{labelY:0.0}" text-anchor="middle" font-size="11" fill="{colors[subject]}">{Stats.F(value, "#,0")}</text>""");
                }
            }
        }

        svg.AppendLine(CultureInfo.InvariantCulture,
            $"""<text x="{left}" y="{height - 12}" fill="#555555" font-size="11">Each panel is scaled on its own, from zero. Written by: dotnet run -c Release --project benchmarks/Benchmarks -- sweep (or all; figures and method: benchmarks/RESULTS.md).</text>""");
        svg.AppendLine("</svg>");
        return svg.ToString();
    }

    /// <summary>An axis maximum, the smallest 1, 2, 2.5, 5 or 10 × 10^k at or above <paramref name="value"/>, and how
    /// many intervals to divide it into so that the gridlines fall on round numbers.</summary>
    private static (double Max, int Ticks) NiceCeiling(double value)
    {
        if (value <= 0 || double.IsNaN(value))
        {
            return (1, 4);
        }

        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(value)));
        foreach (var (step, ticks) in new[] { (1.0, 4), (2.0, 4), (2.5, 5), (5.0, 5), (10.0, 5) })
        {
            if (step * magnitude >= value)
            {
                return (step * magnitude, ticks);
            }
        }

        return (10 * magnitude, 5);
    }
}
