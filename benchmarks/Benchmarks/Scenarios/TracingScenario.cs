using System.Diagnostics;
using System.Text;
using Benchmarks.Infrastructure;
using RedisTestServer;
using SignalR.RedisStreams;

namespace Benchmarks.Scenarios;

/// <summary>The cost of tracing: our backplane's throughput with nobody listening to its ActivitySource, and with a
/// listener that records every span (what an OpenTelemetry SDK sampling everything does, minus the export).</summary>
internal static class TracingScenario
{
    public static async Task<string> RunAsync(ThroughputSettings settings, LogSink log)
    {
        Console.WriteLine($"== tracing: ours, {settings.Messages} messages to All, {settings.Repeats} runs without and with a span listener");
        await using var redis = await RedisServer.StartAsync(persistent: false);
        var run = Guid.NewGuid().ToString("N")[..8];
        await using var cluster = await Cluster.StartAsync(Backplane.RedisStreams, redis.ConnectionString, $"tr-{run}", 2, settings.ClientsPerNode, log);

        var round = 0;
        await ThroughputScenario.RunRoundAsync(cluster, ++round, settings.WarmupMessages, settings);
        var without = new List<ThroughputScenario.RoundResult>();
        var with = new List<ThroughputScenario.RoundResult>();
        long spans = 0;
        for (var repeat = 0; repeat < settings.Repeats; repeat++)
        {
            foreach (var traced in repeat % 2 == 0 ? new[] { false, true } : [true, false])
            {
                using var listener = traced ? Listen(() => Interlocked.Increment(ref spans)) : null;
                var result = await ThroughputScenario.RunRoundAsync(cluster, ++round, settings.Messages, settings);
                (traced ? with : without).Add(result);
                Console.WriteLine($"   run {repeat + 1} {(traced ? "traced" : "untraced")}: {Stats.F(result.MessagesPerSecond, "0")} msg/s, " +
                                  $"p50 {Stats.F(result.P50Ms)} ms, {Stats.F(result.AllocatedBytesPerMessage, "0")} B/msg");
            }
        }

        double Med(List<ThroughputScenario.RoundResult> rs, Func<ThroughputScenario.RoundResult, double> f) => Stats.Median(rs.Select(f));
        var text = new StringBuilder();
        text.AppendLine("## Tracing overhead");
        text.AppendLine();
        text.AppendLine($"Our backplane only, the throughput scenario's setup ({settings.ClientsPerNode} clients per node, {settings.Messages:N0} messages, " +
                        $"{settings.InFlight} in flight), {settings.Repeats} runs each way, alternating; median. *Traced*: an `ActivityListener` records every " +
                        $"span of `{RedisStreamsTelemetry.ActivitySourceName}` (a producer span per send and a consumer span per node per entry: " +
                        $"{spans:N0} spans in the traced runs), no exporter.");
        text.AppendLine();
        text.AppendLine("| metric | untraced | traced | traced / untraced |");
        text.AppendLine("|---|---|---|---|");
        foreach (var (metric, f, format) in new (string, Func<ThroughputScenario.RoundResult, double>, string)[]
        {
            ("messages/s", r => r.MessagesPerSecond, "#,0"),
            ("latency p50 (ms)", r => r.P50Ms, "0.0"),
            ("latency p99 (ms)", r => r.P99Ms, "0.0"),
            ("allocated bytes per message", r => r.AllocatedBytesPerMessage, "#,0"),
        })
        {
            var u = Med(without, f);
            var t = Med(with, f);
            text.AppendLine($"| {metric} | {Stats.F(u, format)} | {Stats.F(t, format)} | {Stats.F(t / u, "0.00")}× |");
        }
        return text.ToString();
    }

    private static ActivityListener Listen(Action onSpan)
    {
        var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == RedisStreamsTelemetry.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _ => onSpan(),
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }
}
