using Benchmarks.Infrastructure;
using Benchmarks.Scenarios;

namespace Benchmarks.Tests;

/// <summary>The node-count sweep of the benchmark harness in a tiny configuration (2 and 3 nodes per backplane, 24
/// clients in all, groups of 4, at most 300 messages per run, one run each): correctness only, no timing. In every
/// cell at every node count, every message sent by ours and by Microsoft's reaches each of its recipients exactly once
/// and in order.</summary>
public sealed class SweepSmokeTests
{
    [Fact(Timeout = 120_000)]
    public async Task Every_sweep_cell_delivers_each_message_once_and_in_order_on_both_backplanes_at_every_node_count()
    {
        var logs = Directory.CreateTempSubdirectory("signalr-bench-smoke-");
        var logPath = Path.Combine(logs.FullName, "sweep.log");
        var settings = SweepSettings.Smoke;
        SweepOutcome outcome;
        using (var log = new LogSink(logPath))
        {
            // Off the test framework's synchronization context, as in the console harness.
            outcome = await Task.Run(() => SweepScenario.RunAsync(settings, log));
        }

        Assert.True(outcome.Violations.Count == 0, string.Join(Environment.NewLine, outcome.Violations) + Environment.NewLine + "node logs: " + logPath);
        Assert.Equal([2, 3], settings.NodeCounts);
        foreach (var nodes in settings.NodeCounts)
        {
            foreach (var cell in new[] { Cell.Direct, Cell.LocalGroups, Cell.Groups, Cell.DirectOneNode })
            {
                foreach (var subject in new[] { Subject.Ours, Subject.Microsoft })
                {
                    var what = $"{nodes} nodes / {cell} / {subject}";
                    var run = Assert.Single(outcome.Runs, r => r.Nodes == nodes && r.Run.Cell == cell && r.Run.Subject == subject).Run;
                    Assert.True(run.Sends > 0, $"{what}: nothing was sent");
                    // Every group of the smoke settings is full: 4 recipients per group send, 1 per direct send.
                    var recipients = cell is Cell.Direct or Cell.DirectOneNode ? 1 : settings.Run.GroupSize;
                    Assert.True(run.Expected == run.Sends * recipients, $"{what}: {run.Expected} deliveries expected for {run.Sends} sends");
                    Assert.True(run.Expected == run.Deliveries, $"{what}: {run.Deliveries} deliveries, {run.Expected} expected");
                    Assert.True(run.Lost + run.Duplicates + run.Reordered + run.Misdelivered == 0, $"{what}: {run.Problems()}");
                    Assert.True(run.SendFailures + run.Hung == 0, $"{what}: {run.Problems()}");
                    Assert.False(run.Stalled, $"{what} stalled");
                }
            }
        }

        Assert.Contains("## Sweep: 2 and 3 nodes per backplane", outcome.Markdown, StringComparison.Ordinal);
        Assert.StartsWith("<svg", outcome.Svg, StringComparison.Ordinal);
        logs.Delete(recursive: true);
    }
}
