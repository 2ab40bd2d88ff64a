using System.Diagnostics;
using System.Numerics;

namespace Benchmarks.Infrastructure;

/// <summary>A fixed-size latency histogram in microseconds: exact below 256 µs, then 128 buckets per power of two
/// (at most 0.8 % error), up to 2^40 µs. Recording allocates nothing, so a run's allocation figure is the system's,
/// not the harness's. One per client, written by that client's receive loop only; merged after the run.</summary>
internal sealed class LatencyHistogram
{
    private const int SubBucketBits = 7;
    private const int SubBuckets = 1 << SubBucketBits;
    private const int Linear = 2 * SubBuckets;
    private const int MaxExponent = 40;
    private const int BucketCount = Linear + ((MaxExponent - SubBucketBits) * SubBuckets);

    private static readonly double MicrosecondsPerTick = 1_000_000.0 / Stopwatch.Frequency;

    private readonly long[] _counts = new long[BucketCount];

    public long Count { get; private set; }

    public void Clear()
    {
        Array.Clear(_counts);
        Count = 0;
    }

    /// <summary>Records a latency given in <see cref="Stopwatch"/> ticks (negative values count as 0).</summary>
    public void RecordTicks(long ticks)
    {
        var micros = ticks <= 0 ? 0L : (long)(ticks * MicrosecondsPerTick);
        _counts[Index(micros)]++;
        Count++;
    }

    public void Add(LatencyHistogram other)
    {
        for (var i = 0; i < BucketCount; i++)
        {
            _counts[i] += other._counts[i];
        }

        Count += other.Count;
    }

    /// <summary>Nearest-rank percentile (p in 0..100) in milliseconds: the middle of the bucket holding that rank; NaN when empty.</summary>
    public double PercentileMs(double p)
    {
        if (Count == 0)
        {
            return double.NaN;
        }

        var rank = Math.Clamp((long)Math.Ceiling(p / 100.0 * Count), 1, Count);
        long seen = 0;
        for (var i = 0; i < BucketCount; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                return Middle(i) / 1000.0;
            }
        }

        return Middle(BucketCount - 1) / 1000.0;
    }

    private static int Index(long micros)
    {
        if (micros < Linear)
        {
            return (int)micros;
        }

        var exponent = Math.Min(63 - BitOperations.LeadingZeroCount((ulong)micros), MaxExponent);
        if (exponent == MaxExponent)
        {
            return BucketCount - 1;
        }

        var shift = exponent - SubBucketBits;
        return Linear + ((exponent - SubBucketBits - 1) * SubBuckets) + (int)((micros >> shift) - SubBuckets);
    }

    private static double Middle(int index)
    {
        if (index < Linear)
        {
            return index;
        }

        var exponent = ((index - Linear) / SubBuckets) + SubBucketBits + 1;
        var mantissa = SubBuckets + ((index - Linear) % SubBuckets);
        var shift = exponent - SubBucketBits;
        var lower = (double)((long)mantissa << shift);
        var width = (double)(1L << shift);
        return lower + ((width - 1) / 2);
    }
}
