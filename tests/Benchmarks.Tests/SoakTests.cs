using Benchmarks.Infrastructure;
using Benchmarks.Soak;

namespace Benchmarks.Tests;

/// <summary>The soak (<c>benchmarks -- soak</c>) for 2 minutes: three node processes under steady all / room / user /
/// direct traffic from every node while every fault kind fires at random, overlapping the others. Every acknowledged
/// message reaches every client that was there for it exactly once and in order, except what a node reported as a gap
/// and what Redis lost together with its sender's node (a restart without data, then the sender killed before it could
/// publish its replay window again: not promised); and every fault really fired.</summary>
public sealed class SoakTests
{
    [Fact(Timeout = 360_000)]
    public async Task Two_minutes_of_random_overlapping_faults_lose_duplicate_and_reorder_nothing()
    {
        var logs = Directory.CreateTempSubdirectory("signalr-soak-test-");
        var logPath = Path.Combine(logs.FullName, "soak.log");
        SoakOutcome outcome;
        using (var log = new LogSink(logPath))
        {
            // Off the test framework's synchronization context, as in the console harness.
            outcome = await Task.Run(() => SoakScenario.RunAsync(SoakSettings.Short, log));
        }

        var total = outcome.Account.Total;
        var why = outcome.Markdown + Environment.NewLine + "node logs: " + logPath;
        Assert.True(outcome.Settled, "deliveries did not settle: " + why);
        Assert.True(total.Sent > 1_000, $"only {total.Sent} messages were acknowledged: " + why);
        Assert.True(total.Delivered > total.Sent, why);
        Assert.True(total.Lost == 0, $"{total.Lost} deliveries lost: " + why);
        Assert.True(total.Duplicated == 0, $"{total.Duplicated} duplicated: " + why);
        Assert.True(total.Reordered == 0, $"{total.Reordered} reordered: " + why);
        Assert.Equal(total.Expected, total.Delivered + total.MissedInReportedGap + total.LostWithSenderNode);
        Assert.True(outcome.UnderReported.Count == 0, "missed more than reported: " + string.Join("; ", outcome.UnderReported) + ": " + why);
        foreach (var (fault, count) in outcome.FaultCounts)
        {
            Assert.True(count >= 2, $"{fault} fired {count} times: " + why);
        }

        Assert.True(outcome.NodeMemory.All(m => m.PeakBytes > 0), why);
        logs.Delete(recursive: true);
    }
}
