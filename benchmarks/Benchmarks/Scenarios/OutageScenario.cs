using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Benchmarks.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using RedisTestServer;

namespace Benchmarks.Scenarios;

/// <summary>The faults the outage scenario injects into Redis.</summary>
internal enum FaultKind
{
    /// <summary><c>SHUTDOWN</c> (AOF fsynced), down for a while, started again on the same port with its data.</summary>
    Restart,

    /// <summary><c>CLIENT KILL TYPE normal</c>: kills every normal connection (not the pub/sub ones).</summary>
    ClientKillNormal,

    /// <summary><c>CLIENT KILL TYPE normal</c> then <c>CLIENT KILL TYPE pubsub</c>: every client connection.</summary>
    ClientKillAll,

    /// <summary>SIGSTOP, a few seconds, SIGCONT.</summary>
    Pause,
}

/// <summary>Parameters of the outage scenario.</summary>
internal sealed record OutageSettings(
    int ClientsPerNode,
    int RatePerNode,
    TimeSpan SendDuration,
    TimeSpan FaultAt,
    int InFlightPerSender,
    TimeSpan RestartDownTime,
    TimeSpan PauseTime,
    TimeSpan Quiet,
    TimeSpan SettleDeadline,
    TimeSpan SendCompletionDeadline,
    IReadOnlyList<FaultKind> Faults)
{
    public static OutageSettings Default { get; } = new(
        3, 100, TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(5), 1_000, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(3),
        TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(40),
        [FaultKind.Restart, FaultKind.ClientKillNormal, FaultKind.ClientKillAll, FaultKind.Pause]);

    public static OutageSettings Quick { get; } = Default with { ClientsPerNode = 2, SendDuration = TimeSpan.FromSeconds(8), FaultAt = TimeSpan.FromSeconds(2) };
}

/// <summary>Both backplanes at once, on the same persistent Redis: each node sends numbered messages to All at a steady
/// rate while a fault hits Redis; then, once deliveries have settled, every client's log is checked against what the
/// senders were told was sent.</summary>
internal static class OutageScenario
{
    // A sender's Status bytes: 0 (the array's default) = not attempted, then one of these.
    private const byte Pending = 1;
    private const byte Sent = 2;
    private const byte Failed = 3;

    private static readonly TimeSpan HealthProbeTimeout = TimeSpan.FromSeconds(15);

    public static async Task<string> RunAsync(OutageSettings settings, LogSink log)
    {
        Console.WriteLine($"== outage: both backplanes side by side on one Redis (appendonly yes, appendfsync always), " +
                          $"{settings.RatePerNode}/s from each of 2 nodes for {settings.SendDuration.TotalSeconds:0} s, fault at +{settings.FaultAt.TotalSeconds:0} s");
        await using var redis = await RedisServer.StartAsync(persistent: true);
        var rows = new List<(FaultKind Fault, FaultOutcome Outcome, RunOutcome Ours, RunOutcome Microsoft)>();
        foreach (var fault in settings.Faults)
        {
            var (outcome, ours, microsoft) = await RunFaultAsync(redis, fault, settings, log);
            rows.Add((fault, outcome, ours, microsoft));
            foreach (var r in new[] { ours, microsoft })
            {
                Console.WriteLine($"   {Describe(fault),-28} {r.Backplane.Short(),-22} sent {r.Sent,5} failed {r.Failed,4} lost {r.LostClientMessages,5} " +
                                  $"dup {r.Duplicates,4} reordered {r.Reordered,4} healthy-after {(r.HealthyAfter ? "yes" : "NO")}");
            }
        }

        return Report(settings, rows, log);
    }

    private static string Describe(FaultKind fault) => fault switch
    {
        FaultKind.Restart => "(a) restart with data",
        FaultKind.ClientKillNormal => "(b) CLIENT KILL TYPE normal",
        FaultKind.ClientKillAll => "(b') CLIENT KILL normal+pubsub",
        FaultKind.Pause => "(c) SIGSTOP / SIGCONT",
        _ => fault.ToString(),
    };

    private static async Task<(FaultOutcome, RunOutcome, RunOutcome)> RunFaultAsync(RedisServer redis, FaultKind fault, OutageSettings settings, LogSink log)
    {
        var name = $"out-{fault}-{Guid.NewGuid().ToString("N")[..6]}";
        log.Note($"outage {fault}: starting clusters {name}");
        await using var ours = await Cluster.StartAsync(Backplane.RedisStreams, redis.ConnectionString, name, 2, settings.ClientsPerNode, log);
        await using var microsoft = await Cluster.StartAsync(Backplane.MicrosoftPubSub, redis.ConnectionString, name, 2, settings.ClientsPerNode, log);
        var runs = new[] { new Run(ours, settings), new Run(microsoft, settings) };
        var connections = await CountConnectionsAsync(redis);

        var t0 = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 5);
        var senders = runs.SelectMany(r => r.Senders.Select(s => s.RunAsync(r.Cluster.Hub(s.Node), t0))).ToList();
        var faultTask = InjectAsync(redis, fault, settings, t0, log);
        await Task.WhenAll(senders);
        var outcome = await faultTask;
        outcome = outcome with { ConnectionsBefore = connections };
        log.Note($"outage {fault}: senders done at +{Stopwatch.GetElapsedTime(t0).TotalSeconds:0.0} s; settling");

        // Settle: until no client receives anything for a quiet period (bounded by a deadline).
        var settle = Stopwatch.StartNew();
        var last = -1L;
        var quietSince = Stopwatch.StartNew();
        while (settle.Elapsed < settings.SettleDeadline)
        {
            var total = runs.Sum(r => r.TotalArrivals);
            if (total != last)
            {
                last = total;
                quietSince.Restart();
            }
            else if (quietSince.Elapsed >= settings.Quiet)
            {
                break;
            }

            // Polling interval of the bounded settle wait.
            await Task.Delay(100);
        }

        var settled = settle.Elapsed < settings.SettleDeadline;
        var results = new List<RunOutcome>();
        foreach (var run in runs)
        {
            // Count before the health probe (the probe uses another client method, so it would not change the counts anyway).
            var result = run.Count(settled);
            results.Add(result with { HealthyAfter = await run.Cluster.ProbeAsync(HealthProbeTimeout) });
        }

        log.Note($"outage {fault}: done");
        return (outcome, results[0], results[1]);
    }

    private static async Task<string> CountConnectionsAsync(RedisServer redis)
    {
        try
        {
            var list = await redis.ClientListAsync();
            var lines = list.Split('\n').Where(l => l.Contains("id=", StringComparison.Ordinal)).ToArray();
            var pubsub = lines.Count(l => l.Contains(" flags=P", StringComparison.Ordinal));
            return $"{lines.Length - pubsub} normal + {pubsub} pub/sub";
        }
        catch (Exception ex) when (ex is IOException or TimeoutException or System.Net.Sockets.SocketException)
        {
            return "unknown";
        }
    }

    private static async Task<FaultOutcome> InjectAsync(RedisServer redis, FaultKind fault, OutageSettings settings, long t0, LogSink log)
    {
        var wait = TimeSpan.FromSeconds((t0 - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency) + settings.FaultAt;
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait);
        }

        var begin = Stopwatch.GetElapsedTime(t0);
        string detail;
        switch (fault)
        {
            case FaultKind.Restart:
                await redis.RestartAsync(settings.RestartDownTime);
                detail = $"SHUTDOWN, {settings.RestartDownTime.TotalSeconds:0.#} s down, started again on the same port";
                break;
            case FaultKind.ClientKillNormal:
                detail = $"killed {await redis.ClientKillAsync("normal")} normal connections";
                break;
            case FaultKind.ClientKillAll:
                var normal = await redis.ClientKillAsync("normal");
                var pubsub = await redis.ClientKillAsync("pubsub");
                detail = $"killed {normal} normal + {pubsub} pub/sub connections";
                break;
            case FaultKind.Pause:
                redis.Pause();
                try
                {
                    await Task.Delay(settings.PauseTime);
                }
                finally
                {
                    redis.Resume();
                }

                detail = $"SIGSTOP, {settings.PauseTime.TotalSeconds:0.#} s, SIGCONT";
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(fault));
        }

        var end = Stopwatch.GetElapsedTime(t0);
        log.Note($"fault {fault}: {detail} (+{begin.TotalSeconds:0.00} s .. +{end.TotalSeconds:0.00} s)");
        return new FaultOutcome(detail, begin, end, "");
    }

    private static string Report(OutageSettings settings, List<(FaultKind Fault, FaultOutcome Outcome, RunOutcome Ours, RunOutcome Microsoft)> rows, LogSink log)
    {
        var perSender = (int)(settings.RatePerNode * settings.SendDuration.TotalSeconds);
        var text = new StringBuilder();
        text.AppendLine("## Outage (loss comparison)");
        text.AppendLine();
        text.AppendLine($"Both backplanes run **side by side on the same Redis** (`--appendonly yes --appendfsync always`), so each fault hits both at the " +
                        $"same moment. Per backplane: 2 nodes, {settings.ClientsPerNode} WebSocket clients per node. Each node's `IHubContext` sends " +
                        $"{perSender:N0} numbered messages to `Clients.All` on a fixed schedule ({settings.RatePerNode}/s per node, " +
                        $"{settings.RatePerNode * 2}/s per backplane, for {settings.SendDuration.TotalSeconds:0} s), each send awaited (up to " +
                        $"{settings.InFlightPerSender} in flight per node, so a stalled send does not stop the schedule; a sender that falls behind " +
                        $"catches up). A send that throws counts as *failed*; one that returns counts as *sent*. The fault comes at " +
                        $"+{settings.FaultAt.TotalSeconds:0} s. Afterwards the harness waits until no client has received anything for " +
                        $"{settings.Quiet.TotalSeconds:0} s (at most {settings.SettleDeadline.TotalSeconds:0} s), then compares every client's log with " +
                        $"the senders' results. Both backplanes use their default options (ours: `PublishTimeout` 30 s).");
        text.AppendLine();
        text.AppendLine("- **lost** = (sent message, client) pairs where the client never got a message its sender was told was sent; " +
                        "**msgs lost** = sent messages missed by at least one client.");
        text.AppendLine("- **duplicates** = extra copies received; **reordered** = arrivals older than one already received from the same sender (per client).");
        text.AppendLine("- **failed but delivered** = sends that threw, yet reached at least one client (a publish whose reply was lost).");
        text.AppendLine("- **healthy after** = a probe sent to All from each node reached every client within 15 s after settling.");
        text.AppendLine();
        var table = new Markdown("fault", "backplane", "attempted", "sent", "failed", "received per client (min–max; expected = sent)",
            "lost (client×msg)", "msgs lost", "duplicates", "reordered", "failed but delivered", "slowest send (s)", "healthy after");
        foreach (var (fault, _, ours, microsoft) in rows)
        {
            foreach (var r in new[] { ours, microsoft })
            {
                table.Row(Describe(fault), r.Backplane.Short(), Stats.N(r.Attempted), Stats.N(r.Sent), Stats.N(r.Failed) + (r.Unresolved > 0 ? $" (+{r.Unresolved} unresolved)" : ""),
                    $"{Stats.N(r.MinReceived)}–{Stats.N(r.MaxReceived)}", Stats.N(r.LostClientMessages), Stats.N(r.LostMessages),
                    Stats.N(r.Duplicates), Stats.N(r.Reordered), Stats.N(r.FailedButDelivered), Stats.F(r.SlowestSendSeconds, "0.00"),
                    (r.HealthyAfter ? "yes" : "**no**") + (r.Settled ? "" : " (did not settle)") + (r.ClosedClients > 0 ? $" ({r.ClosedClients} clients closed)" : ""));
            }
        }

        text.Append(table);
        text.AppendLine();
        text.AppendLine($"**Summary:** over the {rows.Count} faults, ours lost {Stats.N(rows.Sum(r => r.Ours.LostClientMessages))} client×messages, " +
                        $"duplicated {Stats.N(rows.Sum(r => r.Ours.Duplicates))}, reordered {Stats.N(rows.Sum(r => r.Ours.Reordered))} and failed " +
                        $"{Stats.N(rows.Sum(r => r.Ours.Failed))} sends; Microsoft's lost {Stats.N(rows.Sum(r => r.Microsoft.LostClientMessages))} client×messages " +
                        $"({Stats.N(rows.Sum(r => r.Microsoft.LostMessages))} distinct messages), duplicated {Stats.N(rows.Sum(r => r.Microsoft.Duplicates))}, " +
                        $"reordered {Stats.N(rows.Sum(r => r.Microsoft.Reordered))} and failed {Stats.N(rows.Sum(r => r.Microsoft.Failed))} sends.");
        text.AppendLine();
        text.AppendLine("Ratios ours/Microsoft of lost (client×msg): " + string.Join("; ", rows.Select(r =>
            $"{Describe(r.Fault)}: {Stats.N(r.Ours.LostClientMessages)} vs {Stats.N(r.Microsoft.LostClientMessages)}" +
            (r.Microsoft.LostClientMessages > 0 ? $" ({Stats.Ratio(r.Ours.LostClientMessages, r.Microsoft.LostClientMessages)})" : ""))) + ".");
        text.AppendLine();
        text.AppendLine("What happened in each fault (times relative to the first scheduled send):");
        text.AppendLine();
        foreach (var (fault, outcome, ours, microsoft) in rows)
        {
            text.AppendLine($"- {Describe(fault)}: {outcome.Detail}, from +{outcome.Begin.TotalSeconds:0.00} s to +{outcome.End.TotalSeconds:0.00} s; " +
                            $"Redis had {outcome.ConnectionsBefore} connections before. Send errors — ours: {ours.Errors}; Microsoft: {microsoft.Errors}. " +
                            $"Lost messages per sender — ours: {ours.LostRanges}; Microsoft: {microsoft.LostRanges}.");
        }

        text.AppendLine();
        var (ow, oe) = log.Counts(Backplane.RedisStreams);
        var (mw, me) = log.Counts(Backplane.MicrosoftPubSub);
        text.AppendLine($"Node log lines at Warning or above during the whole run — ours: {ow} warnings, {oe} errors; Microsoft: {mw} warnings, {me} errors.");
        text.AppendLine();
        text.AppendLine("Note on (b): StackExchange.Redis (RESP2, its default) opens two connections per multiplexer, an interactive one " +
                        "(type normal) and a subscription one (type pubsub). Microsoft's backplane receives on the subscription connection, which " +
                        "`CLIENT KILL TYPE normal` does not touch: only its publishing connection is killed. Ours does everything (XADD and the " +
                        "blocking XREAD, on two multiplexers per node) on normal connections, so (b) cuts all of them. (b') kills both kinds.");
        return text.ToString();
    }

    private sealed record FaultOutcome(string Detail, TimeSpan Begin, TimeSpan End, string ConnectionsBefore);

    private sealed record RunOutcome(
        Backplane Backplane, long Attempted, long Sent, long Failed, long Unresolved, long MinReceived, long MaxReceived,
        long LostClientMessages, long LostMessages, long Duplicates, long Reordered, long FailedButDelivered,
        double SlowestSendSeconds, bool Settled, int ClosedClients, string Errors, string LostRanges)
    {
        public bool HealthyAfter { get; init; }
    }

    /// <summary>One backplane's senders and client logs for one fault.</summary>
    private sealed class Run
    {
        private readonly List<(BenchClient Client, List<long> Arrivals)> _logs = [];

        public Run(Cluster cluster, OutageSettings settings)
        {
            Cluster = cluster;
            Senders = cluster.Nodes.Select(n => new Sender(n.Index, settings)).ToArray();
            foreach (var client in cluster.Clients)
            {
                var arrivals = new List<long>(Senders.Length * Senders[0].Count);
                _logs.Add((client, arrivals));
                client.Outage = (sender, seq) =>
                {
                    lock (arrivals)
                    {
                        arrivals.Add(Key(sender, seq));
                    }
                };
            }
        }

        public Cluster Cluster { get; }

        public Sender[] Senders { get; }

        public long TotalArrivals => _logs.Sum(l =>
        {
            lock (l.Arrivals)
            {
                return (long)l.Arrivals.Count;
            }
        });

        private static long Key(int sender, long seq) => ((long)sender << 32) | seq;

        public RunOutcome Count(bool settled)
        {
            var sent = new HashSet<long>();
            var failed = new HashSet<long>();
            long attempted = 0, unresolved = 0;
            foreach (var s in Senders)
            {
                for (var i = 0; i < s.Count; i++)
                {
                    switch (s.Status[i])
                    {
                        case Sent:
                            sent.Add(Key(s.Node, i));
                            attempted++;
                            break;
                        case Failed:
                            failed.Add(Key(s.Node, i));
                            attempted++;
                            break;
                        case Pending:
                            unresolved++;
                            attempted++;
                            break;
                        default:
                            break;
                    }
                }
            }

            long lostPairs = 0, duplicates = 0, reordered = 0;
            long minReceived = long.MaxValue, maxReceived = 0;
            var lostMessages = new HashSet<long>();
            var failedDelivered = new HashSet<long>();
            foreach (var (client, arrivalsLog) in _logs)
            {
                long[] arrivals;
                lock (arrivalsLog)
                {
                    arrivals = [.. arrivalsLog];
                }

                var distinct = new HashSet<long>();
                var maxPerSender = new Dictionary<int, long>();
                foreach (var key in arrivals)
                {
                    if (!distinct.Add(key))
                    {
                        duplicates++;
                        continue;
                    }

                    var sender = (int)(key >> 32);
                    var seq = key & 0xFFFF_FFFF;
                    if (maxPerSender.TryGetValue(sender, out var max) && seq < max)
                    {
                        reordered++;
                    }
                    else
                    {
                        maxPerSender[sender] = seq;
                    }

                    if (failed.Contains(key))
                    {
                        failedDelivered.Add(key);
                    }
                }

                var received = 0L;
                foreach (var key in sent)
                {
                    if (distinct.Contains(key))
                    {
                        received++;
                    }
                    else
                    {
                        lostPairs++;
                        lostMessages.Add(key);
                    }
                }

                minReceived = Math.Min(minReceived, received);
                maxReceived = Math.Max(maxReceived, received);
            }

            var errors = Senders.SelectMany(s => s.Errors).GroupBy(e => e.Key).Select(g => $"{g.Key} ×{g.Sum(e => e.Value)}").ToArray();
            return new RunOutcome(
                Cluster.Backplane, attempted, sent.Count, failed.Count, unresolved, minReceived == long.MaxValue ? 0 : minReceived, maxReceived,
                lostPairs, lostMessages.Count, duplicates, reordered, failedDelivered.Count,
                Senders.Max(s => Stats.TicksToMs(Interlocked.Read(ref s.SlowestSendTicks)) / 1000),
                settled, Cluster.Clients.Count(c => c.Closed), errors.Length == 0 ? "none" : string.Join(", ", errors),
                Ranges(lostMessages));
        }

        private static string Ranges(HashSet<long> keys)
        {
            if (keys.Count == 0)
            {
                return "none";
            }

            var parts = new List<string>();
            foreach (var group in keys.GroupBy(k => (int)(k >> 32)).OrderBy(g => g.Key))
            {
                var seqs = group.Select(k => k & 0xFFFF_FFFF).Order().ToArray();
                var ranges = new List<string>();
                var start = seqs[0];
                var prev = seqs[0];
                foreach (var s in seqs.Skip(1).Append(long.MaxValue))
                {
                    if (s == prev + 1)
                    {
                        prev = s;
                        continue;
                    }

                    ranges.Add(start == prev ? start.ToString(CultureInfo.InvariantCulture) : $"{start}–{prev}");
                    start = prev = s;
                }

                var shown = ranges.Count > 6 ? string.Join(",", ranges.Take(6)) + $",… ({ranges.Count} ranges)" : string.Join(",", ranges);
                parts.Add($"node {group.Key}: {seqs.Length} [{shown}]");
            }

            return string.Join("; ", parts);
        }
    }

    /// <summary>One node's sender: numbered messages to All on a fixed schedule, each send awaited.</summary>
    private sealed class Sender(int node, OutageSettings settings)
    {
        public int Node { get; } = node;

        public int Count { get; } = (int)(settings.RatePerNode * settings.SendDuration.TotalSeconds);

        public byte[] Status { get; } = new byte[(int)(settings.RatePerNode * settings.SendDuration.TotalSeconds)];

        public ConcurrentDictionary<string, int> Errors { get; } = new(StringComparer.Ordinal);

        public long SlowestSendTicks;

        public async Task RunAsync(IHubContext<BenchHub> hub, long t0)
        {
            var period = Stopwatch.Frequency / (double)settings.RatePerNode;
            var stopIssuingAt = t0 + (long)((settings.SendDuration + TimeSpan.FromSeconds(10)).TotalSeconds * Stopwatch.Frequency);
            // Not disposed: sends still pending after the completion deadline release it later.
            var window = new SemaphoreSlim(settings.InFlightPerSender, settings.InFlightPerSender);
            var sends = new List<Task>(Count);
            for (var i = 0; i < Count; i++)
            {
                var due = t0 + (long)(i * period);
                var now = Stopwatch.GetTimestamp();
                if (due > now)
                {
                    await Task.Delay(TimeSpan.FromSeconds((due - now) / (double)Stopwatch.Frequency));
                }

                var remaining = TimeSpan.FromSeconds((stopIssuingAt - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);
                if (remaining <= TimeSpan.Zero || !await window.WaitAsync(remaining))
                {
                    break;
                }

                Status[i] = Pending;
                sends.Add(SendOneAsync(hub, i, window));
            }

            try
            {
                await Task.WhenAll(sends).WaitAsync(settings.SendCompletionDeadline);
            }
            catch (TimeoutException)
            {
                // Sends still pending stay "unresolved" in the report.
            }
        }

        private void RecordSendTime(long elapsed)
        {
            for (var attempt = 0; attempt < 100; attempt++)
            {
                var current = Interlocked.Read(ref SlowestSendTicks);
                if (elapsed <= current || Interlocked.CompareExchange(ref SlowestSendTicks, elapsed, current) == current)
                {
                    return;
                }
            }
        }

        private async Task SendOneAsync(IHubContext<BenchHub> hub, int seq, SemaphoreSlim window)
        {
            var start = Stopwatch.GetTimestamp();
            try
            {
                await hub.Clients.All.SendAsync(BenchClient.OutageMethod, Node, (long)seq);
                Status[seq] = Sent;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Status[seq] = Failed;
                Errors.AddOrUpdate(ex.GetType().Name, 1, (_, n) => n + 1);
            }
            finally
            {
                RecordSendTime(Stopwatch.GetTimestamp() - start);
                window.Release();
            }
        }
    }
}
