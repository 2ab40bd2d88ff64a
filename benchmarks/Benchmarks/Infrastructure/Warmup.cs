using System.Diagnostics;
using System.Runtime;

namespace Benchmarks.Infrastructure;

/// <summary>
/// Warm-up that lasts until the JIT has settled. A fresh process spends seconds compiling: first every method at tier 0,
/// then, with dynamic PGO, an instrumented tier and the optimized one, on background threads that compete with the runs
/// for the same 2 cores. Measured on the sweep run alone: the JIT took 0.5–1.5 s of each 2–3 s run through the first
/// measured repeat, which ran at a third of the later repeats' rate, so the median of 3 was the slower of the other
/// two. One warm-up pass per cell is not enough for a fresh process; after other scenarios (in <c>all</c>) it is.
/// </summary>
internal static class Warmup
{
    /// <summary>A pass is settled when the JIT's compilation time during it is below this share of its wall time (the
    /// warm repeats measured 0.2–3%, with rare single runs up to 15%; the cold ones 25–60%).</summary>
    public const double SettledJitShare = 0.05;

    /// <summary>Most warm-up passes, settled or not.</summary>
    public const int MaxPasses = 4;

    /// <summary>Runs <paramref name="pass"/> until a pass is settled or <paramref name="maxPasses"/> ran (the quick looks
    /// of the benchmark take one).</summary>
    public static Task<WarmupOutcome> UntilJitSettlesAsync(Func<Task> pass, int maxPasses = MaxPasses)
        => UntilJitSettlesAsync(pass, static () => (JitInfo.GetCompilationTime(), Stopwatch.GetElapsedTime(0)), maxPasses);

    /// <summary>As above, with the JIT's total compilation time and a wall clock read from <paramref name="clocks"/>.</summary>
    internal static async Task<WarmupOutcome> UntilJitSettlesAsync(Func<Task> pass, Func<(TimeSpan Jit, TimeSpan Wall)> clocks, int maxPasses = MaxPasses)
    {
        for (var passes = 1; ; passes++)
        {
            var before = clocks();
            await pass();
            var after = clocks();
            var wall = after.Wall - before.Wall;
            var share = wall > TimeSpan.Zero ? (after.Jit - before.Jit) / wall : 0;
            Console.WriteLine($"   warm-up pass {passes}: {wall.TotalSeconds:0.0} s, {share * 100:0.#}% of it compiling");
            if (share < SettledJitShare || passes >= maxPasses)
            {
                return new WarmupOutcome(passes, share, maxPasses);
            }
        }
    }
}

/// <summary>How many warm-up passes ran, and the share of the last one's wall time the JIT spent compiling.</summary>
internal sealed record WarmupOutcome(int Passes, double LastJitShare, int MaxPasses = Warmup.MaxPasses)
{
    public static WarmupOutcome None { get; } = new(0, double.NaN);

    /// <summary>For the reports: "2 passes (the JIT compiling 3% of the last)".</summary>
    public string Describe() => Passes == 0
        ? "no warm-up"
        : $"{Passes} warm-up pass{(Passes == 1 ? "" : "es")} (the JIT compiling {LastJitShare * 100:0.#}% of the last; passes repeat, at most {MaxPasses}, " +
          $"until it is below {Warmup.SettledJitShare * 100:0}%)";
}
