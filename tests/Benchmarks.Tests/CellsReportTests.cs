using Benchmarks.Scenarios;

namespace Benchmarks.Tests;

/// <summary>The cells report's paired ratio: ours / Microsoft's within each repeat, the median over repeats and the range.</summary>
public sealed class CellsReportTests
{
    [Fact]
    public void The_paired_ratio_is_the_median_of_each_repeats_ratio_with_its_range()
    {
        // The machine drifts: repeat 2 is three times as fast as repeat 1 for both. Ours / Microsoft's per repeat: 2.0,
        // 1.5, 1.2; the ratio of the medians would be 100 / 50 = 2.0.
        var runs = new List<CellRun>
        {
            Run(Subject.Ours, 0, 1), Run(Subject.Microsoft, 0, 1000), // warm-ups: not counted
            Run(Subject.Ours, 1, 100), Run(Subject.Microsoft, 1, 50),
            Run(Subject.Microsoft, 2, 200), Run(Subject.Ours, 2, 300),
            Run(Subject.Ours, 3, 60), Run(Subject.Microsoft, 3, 50),
            Run(Subject.Ceiling, 1, 10),
        };

        Assert.Equal("1.50× [1.20–2.00×]", CellsReport.Paired(runs, Cell.Groups, r => r.DeliveriesPerSecond));
        Assert.Equal("n/a", CellsReport.Paired(runs, Cell.Direct, r => r.DeliveriesPerSecond));
    }

    private static CellRun Run(Subject subject, int repeat, double rate) => new(
        Cell.Groups, subject, repeat, Load: "1.0", Seconds: 1, Sends: 100, SendFailures: 0, Hung: 0, Deliveries: 100, Expected: 100,
        Lost: 0, Duplicates: 0, Reordered: 0, Misdelivered: 0, Stale: 0, Stalled: false, SendsPerSecond: rate, DeliveriesPerSecond: rate,
        P50Ms: 1, P99Ms: 2, AllocatedBytesPerSend: 1, CpuMicrosPerDelivery: 1, Cores: 1, RedisCpuMicrosPerDelivery: 0.1, Error: null);
}
