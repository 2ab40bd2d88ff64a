using System.Diagnostics;
using System.Text;
using Benchmarks.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using RedisTestServer;

namespace Benchmarks.Scenarios;

/// <summary>Parameters of the throughput scenario.</summary>
internal sealed record ThroughputSettings(int ClientsPerNode, int Messages, int InFlight, int WarmupMessages, int Repeats, TimeSpan RunDeadline)
{
    public static ThroughputSettings Default { get; } = new(10, 20_000, 100, 20_000, 3, TimeSpan.FromSeconds(60));

    public static ThroughputSettings Quick { get; } = new(3, 2_000, 100, 200, 1, TimeSpan.FromSeconds(30)) { MaxWarmupPasses = 1 };

    /// <summary>Most warm-up passes (<see cref="Warmup"/>): the quick look takes one.</summary>
    public int MaxWarmupPasses { get; init; } = Warmup.MaxPasses;
}

/// <summary>Sends M messages to All from node 0's hub context (a bounded number in flight) and measures how long it
/// takes until every client on both nodes has all of them.</summary>
internal static class ThroughputScenario
{
    // About the size of a chat line; the same for both backplanes.
    private const string Text = "The quick brown fox jumps over the lazy dog, then sends a message to every client of the chat.";

    internal sealed record RoundResult(
        double Seconds, double MessagesPerSecond, double DeliveriesPerSecond, double P50Ms, double P99Ms,
        double AllocatedBytesPerMessage, int SendFailures, long Delivered, long Expected, long Duplicates)
    {
        public bool Complete => Delivered == Expected;
    }

    public static async Task<string> RunAsync(ThroughputSettings settings, LogSink log)
    {
        Console.WriteLine($"== throughput: {settings.ClientsPerNode} clients per node x 2 nodes, {settings.Messages} messages to All from node 0, " +
                          $"{settings.InFlight} in flight, median of {settings.Repeats} runs");
        await using var redis = await RedisServer.StartAsync(persistent: false);
        var run = Guid.NewGuid().ToString("N")[..8];
        await using var ours = await Cluster.StartAsync(Backplane.RedisStreams, redis.ConnectionString, $"tp-{run}", 2, settings.ClientsPerNode, log);
        await using var microsoft = await Cluster.StartAsync(Backplane.MicrosoftPubSub, redis.ConnectionString, $"tp-{run}", 2, settings.ClientsPerNode, log);
        var clusters = new[] { ours, microsoft };

        var round = 0;
        // This scenario is the first of `all`: its process is fresh, so one round each would leave the first runs to
        // the JIT (measured: 15k msg/s in run 1 against 31-35k in runs 2 and 3, for both backplanes).
        var warmup = await Warmup.UntilJitSettlesAsync(async () =>
        {
            foreach (var cluster in clusters)
            {
                var warm = await RunRoundAsync(cluster, ++round, settings.WarmupMessages, settings);
                Console.WriteLine($"   warm-up {cluster.Backplane.Short()}: {Stats.F(warm.MessagesPerSecond, "0")} msg/s{(warm.Complete ? "" : " (INCOMPLETE)")}");
            }
        }, settings.MaxWarmupPasses);

        var results = clusters.ToDictionary(c => c.Backplane, _ => new List<RoundResult>());
        for (var repeat = 0; repeat < settings.Repeats; repeat++)
        {
            // Alternate which backplane goes first, so a noisy neighbour does not always hit the same one.
            var order = repeat % 2 == 0 ? clusters : clusters.Reverse().ToArray();
            foreach (var cluster in order)
            {
                var result = await RunRoundAsync(cluster, ++round, settings.Messages, settings);
                results[cluster.Backplane].Add(result);
                Console.WriteLine($"   run {repeat + 1} {cluster.Backplane.Short()}: {Stats.F(result.MessagesPerSecond, "0")} msg/s, " +
                                  $"p50 {Stats.F(result.P50Ms)} ms, p99 {Stats.F(result.P99Ms)} ms, {Stats.F(result.AllocatedBytesPerMessage, "0")} B/msg" +
                                  (result.Complete ? "" : $" INCOMPLETE {result.Delivered}/{result.Expected}"));
            }
        }

        return Report(settings, warmup, results[Backplane.RedisStreams], results[Backplane.MicrosoftPubSub]);
    }

    internal static async Task<RoundResult> RunRoundAsync(Cluster cluster, int round, int messages, ThroughputSettings settings)
    {
        var clients = cluster.Clients;
        var sinks = clients.Select(_ => new Sink(round, messages)).ToArray();
        for (var i = 0; i < clients.Count; i++)
        {
            clients[i].Throughput = sinks[i].OnMessage;
        }

        var hub = cluster.Hub(0).Clients.All;
        var failures = 0;
        using var window = new SemaphoreSlim(settings.InFlight, settings.InFlight);
        using var deadline = new CancellationTokenSource(settings.RunDeadline);
        var sends = new List<Task>(messages);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var start = Stopwatch.GetTimestamp();
        for (long i = 0; i < messages; i++)
        {
            try
            {
                await window.WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            sends.Add(SendOneAsync(i));
        }

        try
        {
            await Task.WhenAll(sinks.Select(s => s.Done)).WaitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            // Reported as incomplete below.
        }

        var end = sinks.All(s => s.Done.IsCompleted) ? sinks.Max(s => s.CompletedAt) : Stopwatch.GetTimestamp();
        var allocatedAfter = GC.GetTotalAllocatedBytes(precise: true);
        try
        {
            await Task.WhenAll(sends).WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (TimeoutException)
        {
            // Sends still hanging after the deadline: counted as failures below.
            failures += sends.Count(t => !t.IsCompleted);
        }

        foreach (var client in clients)
        {
            client.Throughput = null;
        }

        var seconds = Stopwatch.GetElapsedTime(start, end).TotalSeconds;
        var latencies = sinks.SelectMany(s => s.Latencies).ToArray();
        Array.Sort(latencies);
        var delivered = sinks.Sum(s => (long)s.Count);
        return new RoundResult(
            seconds,
            messages / seconds,
            delivered / seconds,
            Stats.Percentile(latencies, 50),
            Stats.Percentile(latencies, 99),
            (allocatedAfter - allocatedBefore) / (double)messages,
            failures,
            delivered,
            (long)messages * clients.Count,
            sinks.Sum(s => (long)s.Duplicates));

        async Task SendOneAsync(long seq)
        {
            try
            {
                await hub.SendAsync(BenchClient.ThroughputMethod, round, seq, Stopwatch.GetTimestamp(), Text);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Interlocked.Increment(ref failures);
            }
            finally
            {
                window.Release();
            }
        }
    }

    private static string Report(ThroughputSettings settings, WarmupOutcome warmup, List<RoundResult> ours, List<RoundResult> microsoft)
    {
        double Med(List<RoundResult> rs, Func<RoundResult, double> f) => Stats.Median(rs.Select(f));
        string Row(string metric, Func<RoundResult, double> f, string format, string better)
        {
            var o = Med(ours, f);
            var m = Med(microsoft, f);
            return $"| {metric} | {Stats.F(o, format)} | {Stats.F(m, format)} | {Stats.Ratio(o, m)} | {better} |";
        }

        var text = new StringBuilder();
        text.AppendLine("## Throughput");
        text.AppendLine();
        text.AppendLine($"{settings.ClientsPerNode} WebSocket clients on each of 2 nodes ({settings.ClientsPerNode * 2} in all); node 0's `IHubContext` sends " +
                        $"{settings.Messages:N0} messages to `Clients.All` with at most {settings.InFlight} `SendAsync` in flight; the clock stops when every " +
                        $"client has every message. Latency = client arrival − timestamp taken just before `SendAsync` (includes queueing behind the " +
                        $"{settings.InFlight} in flight). Warm-up: one round of {settings.WarmupMessages:N0} per backplane in each pass; {warmup.Describe()}. Then {settings.Repeats} runs each " +
                        $"(alternating which backplane goes first); **median** of the runs. Redis without persistence.");
        text.AppendLine();
        text.AppendLine("| metric | ours (Redis Streams) | Microsoft (pub/sub) | ratio ours/Microsoft | better |");
        text.AppendLine("|---|---|---|---|---|");
        text.AppendLine(Row("messages/s (fully delivered to all clients)", r => r.MessagesPerSecond, "#,0", "higher"));
        text.AppendLine(Row("client deliveries/s", r => r.DeliveriesPerSecond, "#,0", "higher"));
        text.AppendLine(Row("end-to-end latency p50 (ms)", r => r.P50Ms, "0.0", "lower"));
        text.AppendLine(Row("end-to-end latency p99 (ms)", r => r.P99Ms, "0.0", "lower"));
        text.AppendLine(Row("allocated bytes per message (whole process)", r => r.AllocatedBytesPerMessage, "#,0", "lower"));
        text.AppendLine();
        text.AppendLine("Every run, in order:");
        text.AppendLine();
        var runs = new Markdown("backplane", "run", "seconds", "msg/s", "p50 ms", "p99 ms", "B/msg", "send failures", "delivered / expected", "duplicates");
        foreach (var (name, list) in new[] { ("ours", ours), ("Microsoft", microsoft) })
        {
            for (var i = 0; i < list.Count; i++)
            {
                var r = list[i];
                runs.Row(name, (i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), Stats.F(r.Seconds, "0.00"), Stats.F(r.MessagesPerSecond, "#,0"),
                    Stats.F(r.P50Ms, "0.0"), Stats.F(r.P99Ms, "0.0"), Stats.F(r.AllocatedBytesPerMessage, "#,0"), Stats.N(r.SendFailures),
                    $"{Stats.N(r.Delivered)} / {Stats.N(r.Expected)}", Stats.N(r.Duplicates));
            }
        }

        text.Append(runs);
        text.AppendLine();
        text.AppendLine("Allocated bytes are `GC.GetTotalAllocatedBytes` over the run divided by the message count, for the whole process: " +
                        "both nodes of the backplane under test **and all its in-process clients** (receiving and parsing is the same work for both " +
                        "backplanes, so the ratio understates the difference between the backplanes themselves). Rough. The difference, which cancels " +
                        $"the common client-side part, is {Stats.F(Med(ours, r => r.AllocatedBytesPerMessage) - Med(microsoft, r => r.AllocatedBytesPerMessage), "#,0")} " +
                        "bytes per message (ours − Microsoft's).");
        return text.ToString();
    }

    /// <summary>What one client received in one round.</summary>
    private sealed class Sink(int round, int expected)
    {
        private readonly long[] _latencies = new long[expected];
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly byte[] _seen = new byte[expected];
        private int _count;
        private int _duplicates;

        public Task Done => _done.Task;

        public long CompletedAt { get; private set; }

        public int Count => Volatile.Read(ref _count);

        public int Duplicates => Volatile.Read(ref _duplicates);

        public IEnumerable<long> Latencies => _latencies.Take(Count);

        // Called on the client's receive loop, one message at a time per client.
        public void OnMessage(int messageRound, long seq, long latencyTicks)
        {
            if (messageRound != round || (ulong)seq >= (ulong)_seen.Length)
            {
                return;
            }

            if (_seen[seq] != 0)
            {
                Interlocked.Increment(ref _duplicates);
                return;
            }

            _seen[seq] = 1;
            var index = _count;
            _latencies[index] = latencyTicks;
            Volatile.Write(ref _count, index + 1);
            if (index + 1 == _latencies.Length)
            {
                CompletedAt = Stopwatch.GetTimestamp();
                _done.TrySetResult();
            }
        }
    }
}
