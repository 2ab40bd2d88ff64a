using System.Xml.Linq;
using Benchmarks.Infrastructure;
using Benchmarks.Scenarios;

namespace Benchmarks.Tests;

/// <summary>The sweep's report from hand-made runs (no servers): one table per cell with a row per node count, the
/// medians, the ours / Microsoft ratio and the flatness line; the plot is well-formed SVG.</summary>
public sealed class SweepReportTests
{
    private static readonly SweepSettings Settings = SweepSettings.Default;

    [Fact]
    public void The_tables_show_medians_ratios_and_flatness_per_cell()
    {
        var runs = new List<SweepRun>();
        foreach (var nodes in Settings.NodeCounts)
        {
            foreach (var cell in SweepScenario.Cells)
            {
                // Ours: 1000 deliveries/s at 2 nodes, 900 at 3, 500 at 6 (the median of 3 runs); Microsoft twice that at every node count.
                var ours = nodes switch { 2 => 1000.0, 3 => 900.0, _ => 500.0 };
                runs.Add(new SweepRun(nodes, Run(cell, Subject.Ours, 0, rate: 1, bytes: 1)));
                foreach (var (repeat, factor) in new[] { (1, 0.5), (2, 1.0), (3, 3.0) })
                {
                    runs.Add(new SweepRun(nodes, Run(cell, Subject.Ours, repeat, ours * factor, bytes: 1000 * factor)));
                    runs.Add(new SweepRun(nodes, Run(cell, Subject.Microsoft, repeat, 2 * ours * factor, bytes: 500 * factor)));
                }
            }
        }

        var markdown = SweepReport.Markdown(Settings, [], new WarmupOutcome(2, 0.012), runs, [], TimeSpan.FromSeconds(1));
        foreach (var cell in SweepScenario.Cells)
        {
            Assert.Contains($"### {cell.SweepTitle()} (deliveries/s)", markdown, StringComparison.Ordinal);
        }

        // Warm-ups (run 0) are not counted: the medians are the repeat-2 values.
        Assert.Equal(SweepScenario.Cells.Count, Count(markdown, "| 2 | 150 | 1,000 | 2,000 | 0.50× | 1,000 | 500 |"));
        Assert.Equal(SweepScenario.Cells.Count, Count(markdown, "| 3 | 100 | 900 | 1,800 | 0.50× | 1,000 | 500 |"));
        Assert.Equal(SweepScenario.Cells.Count, Count(markdown, "| 6 | 50 | 500 | 1,000 | 0.50× | 1,000 | 500 |"));
        // Microsoft's is twice ours in every run, so ours' flatness against Microsoft's, paired per repeat, is 1.
        Assert.Equal(SweepScenario.Cells.Count, Count(markdown,
            "Flatness: ours at 6 nodes / ours at 2 nodes = **0.50×** (Microsoft's at 6 / at 2: 0.50×); against Microsoft's, paired within each repeat: 1.00×."));
        // Ours 1,000 → 500 deliveries/s (1,000 → 2,000 µs per delivery), Microsoft's 2,000 → 1,000 (500 → 1,000 µs); per
        // repeat the rates are scaled by 0.5, 1 and 3, so ours' addition less Microsoft's is 1,000, 500 and 166.67 µs.
        Assert.Equal(SweepScenario.Cells.Count, Count(markdown,
            "Added per delivery from 2 to 6 nodes: time (1 / rate) ours +1,000.00 µs, Microsoft's +500.00 µs; ours' addition less Microsoft's, " +
            "paired within each repeat: +500.00 µs [+166.67 µs to +1,000.00 µs]; CPU ours 0.00 µs, Microsoft's 0.00 µs."));
        Assert.DoesNotContain("CORRECTNESS FAILURES", markdown, StringComparison.Ordinal);
        Assert.Contains("2 warm-up passes (the JIT compiling 1.2% of the last", markdown, StringComparison.Ordinal);

        var svg = XDocument.Parse(SweepReport.Svg(Settings, runs));
        XNamespace ns = "http://www.w3.org/2000/svg";
        Assert.Equal(ns + "svg", svg.Root!.Name);
        // One line per backplane and cell.
        Assert.Equal(2 * SweepScenario.Cells.Count, svg.Descendants(ns + "polyline").Count());
    }

    [Fact]
    public void Flatness_against_Microsofts_is_paired_within_each_repeat()
    {
        // The machine runs repeat 2 three times as fast as repeat 1, for both backplanes at every node count. Ours /
        // Microsoft's: repeat 1 1.5 at 2 nodes and 1.2 at 6 (0.8); repeat 2 1.5 and 1.5 (1.0); repeat 3 2.0 and 1.8 (0.9).
        var runs = new List<SweepRun>();
        foreach (var (repeat, scale, at2, at6) in new[] { (1, 1.0, 1.5, 1.2), (2, 3.0, 1.5, 1.5), (3, 1.0, 2.0, 1.8) })
        {
            runs.Add(new SweepRun(2, Run(Cell.Direct, Subject.Microsoft, repeat, 100 * scale, 1)));
            runs.Add(new SweepRun(2, Run(Cell.Direct, Subject.Ours, repeat, 100 * scale * at2, 1)));
            runs.Add(new SweepRun(6, Run(Cell.Direct, Subject.Microsoft, repeat, 100 * scale, 1)));
            runs.Add(new SweepRun(6, Run(Cell.Direct, Subject.Ours, repeat, 100 * scale * at6, 1)));
        }
        runs.Add(new SweepRun(2, Run(Cell.Direct, Subject.Ours, 0, 1, 1))); // a warm-up: not counted

        Assert.Equal(0.9, SweepReport.RelativeFlatness(runs, Cell.Direct, 2, 6), precision: 9);
        Assert.True(double.IsNaN(SweepReport.RelativeFlatness(runs, Cell.Groups, 2, 6)));

        // Per delivery (1 / rate), repeat 1: ours 1e6/150 → 1e6/120 (+1,666.67 µs), Microsoft's none; repeat 2: ours
        // 1e6/450 at both; repeat 3: ours 1e6/200 → 1e6/180 (+555.56 µs). The warm-up counts for nothing.
        var added = SweepReport.AddedTimeOursLessMicrosofts(runs, Cell.Direct, 2, 6);
        Assert.Equal([1e6 / 120 - 1e6 / 150, 0, 1e6 / 180 - 1e6 / 200], added, (a, b) => Math.Abs(a - b) < 1e-6);
        Assert.Empty(SweepReport.AddedTimeOursLessMicrosofts(runs, Cell.Groups, 2, 6));
    }

    [Fact]
    public void A_failed_run_is_flagged_in_the_report()
    {
        var runs = new List<SweepRun>
        {
            new(2, Run(Cell.Direct, Subject.Ours, 1, 100, 100) with { Lost = 3 }),
            new(2, Run(Cell.Direct, Subject.Microsoft, 1, 100, 100)),
        };

        var markdown = SweepReport.Markdown(Settings, [], WarmupOutcome.None, runs, ["2 nodes / direct / ours / run 1: lost 3"], TimeSpan.FromSeconds(1));
        Assert.Contains("CORRECTNESS FAILURES (1 runs)", markdown, StringComparison.Ordinal);
        Assert.Contains("**3 / 0 / 0** · 0 / 0 / 0", markdown, StringComparison.Ordinal);
        Assert.True(runs[0].Run.Failed);
    }

    private static CellRun Run(Cell cell, Subject subject, int repeat, double rate, double bytes) => new(
        cell, subject, repeat, Load: "1.0", Seconds: 1, Sends: 100, SendFailures: 0, Hung: 0, Deliveries: 100, Expected: 100,
        Lost: 0, Duplicates: 0, Reordered: 0, Misdelivered: 0, Stale: 0, Stalled: false, SendsPerSecond: rate, DeliveriesPerSecond: rate,
        P50Ms: 1, P99Ms: 2, AllocatedBytesPerSend: bytes, CpuMicrosPerDelivery: 1, Cores: 1, RedisCpuMicrosPerDelivery: 0.1, Error: null);

    private static int Count(string text, string part)
    {
        var count = 0;
        for (var at = text.IndexOf(part, StringComparison.Ordinal); at >= 0 && count < 1000; at = text.IndexOf(part, at + part.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }
}
