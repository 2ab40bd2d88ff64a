using System.Diagnostics;
using Benchmarks.Infrastructure;

namespace Benchmarks.Tests;

public sealed class LatencyHistogramTests
{
    [Fact]
    public void Percentiles_are_within_one_percent_of_the_exact_ones()
    {
        var histogram = new LatencyHistogram();
        var other = new LatencyHistogram();
        // 1 µs … 100,000 µs (100 ms), half in each histogram.
        for (var micros = 1L; micros <= 100_000; micros++)
        {
            (micros % 2 == 0 ? histogram : other).RecordTicks(micros * Stopwatch.Frequency / 1_000_000);
        }

        histogram.Add(other);
        Assert.Equal(100_000, histogram.Count);
        foreach (var (p, exactMs) in new[] { (50.0, 50.0), (99.0, 99.0), (1.0, 1.0), (100.0, 100.0) })
        {
            var ms = histogram.PercentileMs(p);
            Assert.InRange(ms, exactMs * 0.99, exactMs * 1.01);
        }

        Assert.True(double.IsNaN(new LatencyHistogram().PercentileMs(50)));
    }
}
