using System.Diagnostics;
using System.Globalization;

namespace Benchmarks.Infrastructure;

/// <summary>Small statistics and formatting helpers.</summary>
internal static class Stats
{
    /// <summary>Nearest-rank percentile of a sorted array (p in 0..100).</summary>
    public static double Percentile(long[] sortedTicks, double p)
    {
        if (sortedTicks.Length == 0)
        {
            return double.NaN;
        }

        var rank = (int)Math.Ceiling(p / 100.0 * sortedTicks.Length);
        return TicksToMs(sortedTicks[Math.Clamp(rank - 1, 0, sortedTicks.Length - 1)]);
    }

    public static double TicksToMs(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Where(v => !double.IsNaN(v)).Order().ToArray();
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    public static string F(double value, string format = "0.##")
        => double.IsNaN(value) ? "n/a" : value.ToString(format, CultureInfo.InvariantCulture);

    public static string N(long value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    /// <summary>ours / Microsoft's, formatted as "1.23×".</summary>
    public static string Ratio(double ours, double microsoft)
        => double.IsNaN(ours) || double.IsNaN(microsoft) || microsoft == 0 ? "n/a" : (ours / microsoft).ToString("0.00", CultureInfo.InvariantCulture) + "×";
}
