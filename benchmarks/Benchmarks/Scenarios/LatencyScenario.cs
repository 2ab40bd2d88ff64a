using System.Diagnostics;
using System.Text;
using Benchmarks.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using RedisTestServer;

namespace Benchmarks.Scenarios;

/// <summary>Parameters of the latency scenario.</summary>
internal sealed record LatencySettings(int ClientsPerNode, int Messages, int WarmupMessages, TimeSpan PerMessageTimeout, TimeSpan RunDeadline)
{
    public static LatencySettings Default { get; } = new(1, 2_000, 500, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(90));

    public static LatencySettings Quick { get; } = new(1, 300, 50, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30));
}

/// <summary>One message at a time: node 0 sends to All, the clock stops when a client on node 1 has it; then the next.</summary>
internal static class LatencyScenario
{
    private sealed record Result(long[] SortedLatencies, long[] SortedSendCalls, int Timeouts, int SendFailures, double Seconds);

    public static async Task<string> RunAsync(LatencySettings settings, LogSink log)
    {
        Console.WriteLine($"== latency: ping-pong, {settings.Messages} messages from node 0 to All, measured at a client on node 1");
        await using var redis = await RedisServer.StartAsync(persistent: false);
        var run = Guid.NewGuid().ToString("N")[..8];
        var results = new Dictionary<Backplane, Result>();
        foreach (var backplane in new[] { Backplane.RedisStreams, Backplane.MicrosoftPubSub })
        {
            await using var cluster = await Cluster.StartAsync(backplane, redis.ConnectionString, $"lat-{run}", 2, settings.ClientsPerNode, log);
            await MeasureAsync(cluster, round: 1, settings.WarmupMessages, settings);
            var result = await MeasureAsync(cluster, round: 2, settings.Messages, settings);
            results[backplane] = result;
            Console.WriteLine($"   {backplane.Short()}: p50 {Stats.F(Stats.Percentile(result.SortedLatencies, 50))} ms, " +
                              $"p99 {Stats.F(Stats.Percentile(result.SortedLatencies, 99))} ms, timeouts {result.Timeouts}");
        }

        return Report(settings, results[Backplane.RedisStreams], results[Backplane.MicrosoftPubSub]);
    }

    private static async Task<Result> MeasureAsync(Cluster cluster, int round, int messages, LatencySettings settings)
    {
        var target = cluster.Clients.First(c => c.Node == 1);
        var hub = cluster.Hub(0).Clients.All;
        var latencies = new List<long>(messages);
        var sendCalls = new List<long>(messages);
        var timeouts = 0;
        var failures = 0;
        TaskCompletionSource<long>? pending = null;
        long pendingSeq = -1;
        target.Ping = (r, seq, arrivedAt) =>
        {
            if (r == round && seq == Volatile.Read(ref pendingSeq))
            {
                Volatile.Read(ref pending)?.TrySetResult(arrivedAt);
            }
        };

        var clock = Stopwatch.StartNew();
        for (long i = 0; i < messages && clock.Elapsed < settings.RunDeadline; i++)
        {
            var arrival = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref pending, arrival);
            Volatile.Write(ref pendingSeq, i);
            var start = Stopwatch.GetTimestamp();
            try
            {
                using var sendTimeout = new CancellationTokenSource(settings.PerMessageTimeout);
                await hub.SendAsync(BenchClient.PingMethod, round, i, sendTimeout.Token);
                sendCalls.Add(Stopwatch.GetTimestamp() - start);
                var arrivedAt = await arrival.Task.WaitAsync(settings.PerMessageTimeout);
                latencies.Add(arrivedAt - start);
            }
            catch (TimeoutException)
            {
                timeouts++;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                failures++;
            }
        }

        target.Ping = null;
        var sortedLatencies = latencies.ToArray();
        Array.Sort(sortedLatencies);
        var sortedSends = sendCalls.ToArray();
        Array.Sort(sortedSends);
        return new Result(sortedLatencies, sortedSends, timeouts, failures, clock.Elapsed.TotalSeconds);
    }

    private static string Report(LatencySettings settings, Result ours, Result microsoft)
    {
        var text = new StringBuilder();
        text.AppendLine("## Latency");
        text.AppendLine();
        text.AppendLine($"One message at a time: node 0's `IHubContext` sends to `Clients.All`; the clock stops when the client on **node 1** " +
                        $"(the other node) has it, then the next message goes. {settings.ClientsPerNode} client per node, {settings.WarmupMessages} warm-up " +
                        $"messages, then {settings.Messages:N0} measured. Redis without persistence.");
        text.AppendLine();
        text.AppendLine("| metric | ours (Redis Streams) | Microsoft (pub/sub) | ratio ours/Microsoft | better |");
        text.AppendLine("|---|---|---|---|---|");
        foreach (var p in new[] { 50.0, 95, 99 })
        {
            var o = Stats.Percentile(ours.SortedLatencies, p);
            var m = Stats.Percentile(microsoft.SortedLatencies, p);
            text.AppendLine($"| cross-node latency p{p} (ms) | {Stats.F(o, "0.000")} | {Stats.F(m, "0.000")} | {Stats.Ratio(o, m)} | lower |");
        }

        {
            var o = Stats.Percentile(ours.SortedLatencies, 100);
            var m = Stats.Percentile(microsoft.SortedLatencies, 100);
            text.AppendLine($"| cross-node latency max (ms) | {Stats.F(o, "0.000")} | {Stats.F(m, "0.000")} | {Stats.Ratio(o, m)} | lower |");
        }

        {
            var o = Stats.Percentile(ours.SortedSendCalls, 50);
            var m = Stats.Percentile(microsoft.SortedSendCalls, 50);
            text.AppendLine($"| `SendAsync` call returns, p50 (ms) | {Stats.F(o, "0.000")} | {Stats.F(m, "0.000")} | {Stats.Ratio(o, m)} | lower |");
        }

        text.AppendLine($"| messages measured | {ours.SortedLatencies.Length:N0} | {microsoft.SortedLatencies.Length:N0} | | |");
        text.AppendLine($"| timeouts (> {settings.PerMessageTimeout.TotalSeconds:0} s) / send failures | {ours.Timeouts} / {ours.SendFailures} | " +
                        $"{microsoft.Timeouts} / {microsoft.SendFailures} | | |");
        text.AppendLine();
        text.AppendLine("`SendAsync` returns when the backplane has the packet: for ours after the XADD (a Lua script: sequence check + XADD) is acknowledged, " +
                        "for Microsoft's after PUBLISH is acknowledged.");
        return text.ToString();
    }
}
