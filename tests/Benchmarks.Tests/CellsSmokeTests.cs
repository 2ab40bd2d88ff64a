using Benchmarks.Infrastructure;
using Benchmarks.Scenarios;

namespace Benchmarks.Tests;

/// <summary>The cells scenario of the benchmark harness in a tiny configuration (3 servers × 15 clients per backplane, at
/// most 300 messages per cell, one run each): correctness only, no timing. Every message sent by ours, Microsoft's and
/// the no-backplane ceiling reaches each of its recipients exactly once and in order.</summary>
public sealed class CellsSmokeTests
{
    [Fact(Timeout = 120_000)]
    public async Task Every_cell_delivers_each_message_once_and_in_order_on_both_backplanes_and_the_ceiling()
    {
        var logs = Directory.CreateTempSubdirectory("signalr-bench-smoke-");
        var logPath = Path.Combine(logs.FullName, "cells.log");
        CellsOutcome outcome;
        using (var log = new LogSink(logPath))
        {
            // Off the test framework's synchronization context, as in the console harness.
            outcome = await Task.Run(() => CellsScenario.RunAsync(CellsSettings.Smoke, log));
        }

        Assert.True(outcome.Violations.Count == 0, string.Join(Environment.NewLine, outcome.Violations) + Environment.NewLine + "node logs: " + logPath);
        var delivering = new[] { Subject.Ours, Subject.Microsoft, Subject.Ceiling };
        foreach (var cell in CellsScenario.Cells.Where(c => c != Cell.PublishPath))
        {
            foreach (var subject in delivering)
            {
                var run = Assert.Single(outcome.Runs, r => r.Cell == cell && r.Subject == subject);
                Assert.True(run.Sends > 0, $"{cell} / {subject}: nothing was sent");
                Assert.Equal(run.Expected, run.Deliveries);
                Assert.Equal(0, run.Lost);
                Assert.Equal(0, run.Duplicates);
                Assert.Equal(0, run.Reordered);
                Assert.Equal(0, run.Misdelivered);
                Assert.Equal(0, run.SendFailures + run.Hung);
                Assert.False(run.Stalled, $"{cell} / {subject} stalled");
                if (subject == Subject.Ours)
                {
                    // Our nodes' own counts (their meters) are in every run: the reads it took, the messages per write.
                    Assert.True(run.ReadsPerSend > 0, $"{cell}: reads per send {run.ReadsPerSend}");
                    Assert.True(run.MessagesPerWrite >= 1, $"{cell}: messages per connection write {run.MessagesPerWrite}");
                }
                else
                {
                    Assert.True(double.IsNaN(run.ReadsPerSend) && double.IsNaN(run.MessagesPerWrite), $"{cell} / {subject} has no such counts");
                }
            }
        }

        foreach (var subject in new[] { Subject.Ours, Subject.Microsoft })
        {
            var run = Assert.Single(outcome.Runs, r => r.Cell == Cell.PublishPath && r.Subject == subject);
            Assert.True(run.Sends > 0, $"publish path / {subject}: nothing was sent");
            Assert.Equal(0, run.SendFailures + run.Hung);
        }

        logs.Delete(recursive: true);
    }
}
