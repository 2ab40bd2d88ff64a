using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Benchmarks.Infrastructure;
using RedisTestServer;

namespace Benchmarks.Soak;

/// <summary>
/// Redis dead for a long time under full send load (<c>benchmarks -- outage-memory --minutes 10</c>): one node process
/// (<see cref="SoakNode"/>) sends numbered messages to All at a fixed rate from inside, with up to 20,000 sends in
/// flight, while redis-server is stopped for the whole outage. Its resident memory is sampled every second: it must
/// level off (bounded by <c>OutboxCapacity</c> packets plus the sends waiting for room) instead of growing with the
/// outage. Sends beyond the outbox wait (back-pressure), then fail with <c>RedisStreamsPublishException</c> after
/// <c>PublishTimeout</c>. When Redis returns, a client on the node must receive every send that completed, in order.
/// </summary>
internal static partial class OutageMemoryScenario
{
    private const int Rate = 2_000;
    private const int OutboxCapacity = 10_000;

    public static async Task<(string Markdown, bool Ok)> RunAsync(TimeSpan outage, LogSink log)
    {
        Console.WriteLine($"== outage-memory: Redis down {outage.TotalMinutes:0.#} min under {Rate}/s of sends (OutboxCapacity {OutboxCapacity}, PublishTimeout 30 s)");
        var clock = Stopwatch.StartNew();
        await using var redis = await RedisServer.StartAsync(persistent: true);
        var lifetime = (int)Math.Ceiling(outage.TotalMinutes) + 10;
        await using var node = await NodeProcess.StartAsync(0, 1, redis.ConnectionString, 10_000, lifetime, log,
            "outbox=" + OutboxCapacity, "timeout=30", "load=" + Rate, "inflight=20000");
        await using var client = await SoakClient.ConnectAsync(1, node);

        // Warm up with Redis up until a few thousand sends went through.
        await WaitAsync(() => Load(node).Completed >= 10_000, TimeSpan.FromMinutes(2), "10,000 sends completed before the outage");
        var before = Load(node);
        var rssBefore = node.CurrentMemory;
        node.SampleMemory();
        Console.WriteLine($"   before: completed {before.Completed:N0}, RSS {Mb(rssBefore)}");

        await redis.KillAsync();
        var down = Stopwatch.StartNew();
        var samples = new List<(double Minutes, long Rss, LoadState Load)>();
        using (var timer = new PeriodicTimer(TimeSpan.FromSeconds(1)))
        {
            // The outage itself: sample once a second until it has lasted its time.
            while (down.Elapsed < outage && await timer.WaitForNextTickAsync())
            {
                node.SampleMemory();
                samples.Add((down.Elapsed.TotalMinutes, node.CurrentMemory, Load(node)));
                if (samples.Count % 60 == 0)
                {
                    var s = samples[^1];
                    Console.WriteLine($"   +{s.Minutes:0.0} min down: RSS {Mb(s.Rss)}, outbox peak {node.PeakOutbox:N0}, completed {s.Load.Completed:N0}, " +
                                      $"refused {s.Load.Refused:N0}, in flight {s.Load.Issued - s.Load.Completed - s.Load.Refused - s.Load.Other:N0}");
                }
            }
        }

        var atEnd = Load(node);
        await redis.RestartAsync();
        var back = Stopwatch.StartNew();
        // Drain: the client must catch up with every completed send (the load goes on meanwhile).
        await WaitAsync(() => client.ArrivalCount >= Load(node).Completed - 100 && Load(node).Completed > atEnd.Completed + 10_000,
            TimeSpan.FromMinutes(5), "the backlog drained to the client");
        var drained = back.Elapsed;
        var arrivals = client.Arrivals();
        var outOfOrder = 0;
        var duplicates = 0;
        long last = 0;
        foreach (var key in arrivals)
        {
            var seq = key & 0xFFFF_FFFF;
            if (seq == last)
            {
                duplicates++;
            }
            else if (seq < last)
            {
                outOfOrder++;
            }

            last = Math.Max(last, seq);
        }

        var firstMinute = samples.Where(s => s.Minutes <= 1).Select(s => s.Rss).DefaultIfEmpty(0).Max();
        var peakDown = samples.Select(s => s.Rss).DefaultIfEmpty(0).Max();
        var lastMinute = samples.Where(s => s.Minutes >= outage.TotalMinutes - 1).Select(s => s.Rss).DefaultIfEmpty(0).Max();
        var waitedPeak = samples.Select(s => s.Load.Issued - s.Load.Completed - s.Load.Refused - s.Load.Other).DefaultIfEmpty(0).Max();
        var ok = outOfOrder == 0 && duplicates == 0 && atEnd.Refused > 0 && node.PeakOutbox <= OutboxCapacity && atEnd.Other == 0;
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"## Redis dead for {outage.TotalMinutes:0.#} minutes under full send load");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"One node process, `OutboxCapacity` {OutboxCapacity:N0}, `PublishTimeout` 30 s, sending {Rate:N0} messages/s to All from inside " +
                        $"(at most 20,000 in flight), one WebSocket client. redis-server SIGKILLed for {outage.TotalMinutes:0.#} min, then started again with its data. Took {clock.Elapsed.TotalMinutes:0.0} min.");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"- Resident memory (VmRSS): {Mb(rssBefore)} before the outage; highest {Mb(firstMinute)} in its first minute, " +
                        $"{Mb(lastMinute)} in its last minute, {Mb(peakDown)} at most while Redis was down; peak of the whole run (VmHWM) {Mb(node.PeakMemory)}.");
        text.AppendLine(CultureInfo.InvariantCulture, $"- Outbox depth: at most {node.PeakOutbox:N0} (capacity {OutboxCapacity:N0}); sends waiting for room or in the outbox at most {waitedPeak:N0}.");
        text.AppendLine(CultureInfo.InvariantCulture, $"- During the outage: {atEnd.Completed - before.Completed:N0} sends completed (before Redis died), {atEnd.Refused:N0} failed with `RedisStreamsPublishException`, " +
                        $"{atEnd.Other:N0} failed otherwise.");
        text.AppendLine(CultureInfo.InvariantCulture, $"- After Redis returned: the client caught up in {drained.TotalSeconds:0} s; {arrivals.Length:N0} messages received, {outOfOrder} out of order, {duplicates} duplicated.");
        text.AppendLine("- RSS samples (minute: MiB): " + string.Join(", ", samples.Where((_, i) => i % 60 == 0).Select(s => $"{s.Minutes:0}: {s.Rss / (1024 * 1024)}")) + ".");
        return (text.ToString(), ok);
    }

    private static string Mb(long bytes) => (bytes / (1024.0 * 1024)).ToString("0", CultureInfo.InvariantCulture) + " MiB";

    private static async Task WaitAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"Timed out after {timeout.TotalSeconds:0} s waiting for: {what}.");
            }

            // Polling interval of a bounded wait.
            await Task.Delay(200);
        }
    }

    private static LoadState Load(NodeProcess node)
    {
        var match = LoadLine().Match(node.LastLoad);
        return match.Success
            ? new LoadState(long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture), long.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture),
                long.Parse(match.Groups[3].Value, CultureInfo.InvariantCulture), long.Parse(match.Groups[4].Value, CultureInfo.InvariantCulture))
            : new LoadState(0, 0, 0, 0);
    }

    private sealed record LoadState(long Issued, long Completed, long Refused, long Other);

    [GeneratedRegex(@"issued=(\d+) completed=(\d+) refused=(\d+) other=(\d+)")]
    private static partial Regex LoadLine();
}
