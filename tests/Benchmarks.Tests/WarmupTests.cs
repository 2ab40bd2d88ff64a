using System.Reflection.Emit;
using Benchmarks.Infrastructure;

namespace Benchmarks.Tests;

/// <summary>The benchmarks' warm-up repeats its pass until the JIT has settled, and stops after a bounded number of passes
/// when it does not.</summary>
public sealed class WarmupTests
{
    [Fact]
    public async Task Passes_repeat_until_one_spends_under_the_settled_share_compiling()
    {
        // Per pass: 10 s of wall time, and the JIT compiling 6 s, then 2 s, then 0.3 s (3%: settled).
        var jitPerPass = new[] { 6.0, 2.0, 0.3, 0.0 };
        var (jit, wall, passes) = (0.0, 0.0, 0);
        var outcome = await Warmup.UntilJitSettlesAsync(
            () =>
            {
                jit += jitPerPass[passes++];
                wall += 10;
                return Task.CompletedTask;
            },
            () => (TimeSpan.FromSeconds(jit), TimeSpan.FromSeconds(wall)));

        Assert.Equal(3, outcome.Passes);
        Assert.Equal(3, passes);
        Assert.Equal(0.03, outcome.LastJitShare, precision: 6);
        Assert.StartsWith("3 warm-up passes (the JIT compiling 3% of the last", outcome.Describe(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_quick_look_takes_the_one_pass_it_is_allowed()
    {
        var (jit, wall, passes) = (0.0, 0.0, 0);
        var outcome = await Warmup.UntilJitSettlesAsync(
            () =>
            {
                passes++;
                jit += 5;
                wall += 10;
                return Task.CompletedTask;
            },
            () => (TimeSpan.FromSeconds(jit), TimeSpan.FromSeconds(wall)),
            maxPasses: 1);

        Assert.Equal(1, passes);
        Assert.Equal(new WarmupOutcome(1, 0.5, 1), outcome);
        Assert.Contains("at most 1,", outcome.Describe(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_pass_that_keeps_compiling_stops_after_the_most_passes()
    {
        // Each pass compiles methods no pass compiled before (dynamic methods, each compiled by the JIT on its first
        // call): the runtime's own JIT clock sees the pass as mostly compiling, every time. The methods are long (a
        // few hundred IL instructions each), so that compiling them, not building them, takes most of the pass even on
        // a machine busy with other tests (with 4-instruction methods, one CI run saw a pass at 4.1%).
        const int Terms = 64;
        var passes = 0;
        var outcome = await Warmup.UntilJitSettlesAsync(() =>
        {
            passes++;
            for (var i = 0; i < 100; i++)
            {
                var method = new DynamicMethod($"warmup{passes}_{i}", typeof(int), [typeof(int)], typeof(WarmupTests).Module);
                var il = method.GetILGenerator();
                il.Emit(OpCodes.Ldarg_0);
                for (var k = 0; k < Terms; k++)
                {
                    // x = (x + i) ^ k, then x * 3: kept apart by the data flow, so the JIT works through each term.
                    il.Emit(OpCodes.Ldc_I4, i);
                    il.Emit(OpCodes.Add);
                    il.Emit(OpCodes.Ldc_I4, k);
                    il.Emit(OpCodes.Xor);
                    il.Emit(OpCodes.Ldc_I4_3);
                    il.Emit(OpCodes.Mul);
                }
                il.Emit(OpCodes.Ret);
                Assert.Equal(Expected(1, i), ((Func<int, int>)method.CreateDelegate(typeof(Func<int, int>)))(1));
            }
            return Task.CompletedTask;
        });

        Assert.Equal(Warmup.MaxPasses, outcome.Passes);
        Assert.Equal(Warmup.MaxPasses, passes);
        Assert.True(outcome.LastJitShare >= Warmup.SettledJitShare, $"the last pass spent {outcome.LastJitShare:P1} compiling");

        static int Expected(int x, int i)
        {
            unchecked
            {
                for (var k = 0; k < Terms; k++)
                {
                    x = ((x + i) ^ k) * 3;
                }
                return x;
            }
        }
    }
}
