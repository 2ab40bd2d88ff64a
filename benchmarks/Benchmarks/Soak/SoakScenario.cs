using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Benchmarks.Infrastructure;
using RedisTestServer;

namespace Benchmarks.Soak;

/// <summary>Parameters of a soak run.</summary>
internal sealed record SoakSettings(
    TimeSpan Duration,
    int Nodes,
    int ClientsPerNode,
    double RatePerClient,
    int MaxLength,
    TimeSpan FaultIntervalMin,
    TimeSpan FaultIntervalMax,
    TimeSpan RedisDownMin,
    TimeSpan RedisDownMax,
    TimeSpan NodeDownTime,
    TimeSpan SlowReaderFreeze,
    TimeSpan Quiet,
    TimeSpan SettleDeadline,
    int Seed)
{
    /// <summary>The long run: each fault kind fires every 25 to 55 s (plus its own duration), 30+ times in 30 minutes.</summary>
    public static SoakSettings ForMinutes(double minutes) => new(
        TimeSpan.FromMinutes(minutes), 3, 2, 15, 200,
        TimeSpan.FromSeconds(25), TimeSpan.FromSeconds(55), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(5),
        TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(90),
        Environment.TickCount);

    /// <summary>A short run (2 minutes; the command uses it below 10 minutes): faults every 8 to 20 s, so each kind
    /// fires a few times.</summary>
    public static SoakSettings Short { get; } = ForMinutes(2) with
    {
        FaultIntervalMin = TimeSpan.FromSeconds(8),
        FaultIntervalMax = TimeSpan.FromSeconds(20),
    };
}

/// <summary>What a soak run found.</summary>
internal sealed record SoakOutcome(
    SoakAccount Account,
    IReadOnlyDictionary<SoakFault, int> FaultCounts,
    long GapsReported,
    long ClientsMissedInGaps,
    IReadOnlyList<string> UnderReported,
    IReadOnlyList<(int Node, long PeakBytes, int Incarnations)> NodeMemory,
    long DriverPeakBytes,
    long PeakOutbox,
    bool Settled,
    TimeSpan Elapsed,
    string Markdown);

/// <summary>
/// The soak: real node processes (<see cref="SoakNode"/>) on one persistent redis-server, two clients on each, every
/// client sending numbered messages to all, its room, a user and a connection on other nodes, in turn, at a steady rate,
/// while one loop per fault kind injects that fault at random intervals, overlapping the others: Redis restarted with
/// and without its data, frozen, its connections killed; a node killed and restarted; a node frozen past trimming.
/// Bounded: it stops injecting after <see cref="SoakSettings.Duration"/>, lets deliveries settle, and accounts for
/// every acknowledged message (<see cref="SoakAccount"/>).
/// </summary>
internal sealed class SoakScenario : IDisposable
{
    private static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(60);

    private readonly SoakSettings _settings;
    private readonly LogSink _log;
    private readonly Lock _gate = new();
    private readonly List<SoakClient> _clients = [];
    private readonly List<NodeProcess> _allIncarnations = [];
    private readonly NodeProcess?[] _nodes;
    private readonly SemaphoreSlim[] _nodeLocks;
    private readonly SemaphoreSlim _redisLock = new(1, 1);
    private readonly ConcurrentQueue<SentMessage> _sent = new();
    private readonly ConcurrentQueue<FaultWindow> _faults = new();
    private readonly List<Task> _senders = [];
    private RedisServer _redis = null!;
    private int _nextClientId;

    private SoakScenario(SoakSettings settings, LogSink log)
    {
        _settings = settings;
        _log = log;
        _nodes = new NodeProcess?[settings.Nodes];
        _nodeLocks = [.. Enumerable.Range(0, settings.Nodes).Select(_ => new SemaphoreSlim(1, 1))];
    }

    public static async Task<SoakOutcome> RunAsync(SoakSettings settings, LogSink log)
    {
        using var scenario = new SoakScenario(settings, log);
        return await scenario.RunAsync();
    }

    public void Dispose()
    {
        _redisLock.Dispose();
        foreach (var gate in _nodeLocks)
        {
            gate.Dispose();
        }
    }

    private async Task<SoakOutcome> RunAsync()
    {
        var clock = Stopwatch.StartNew();
        var lifetimeMinutes = (int)Math.Ceiling(_settings.Duration.TotalMinutes) + 10;
        await using var redis = await RedisServer.StartAsync(persistent: true);
        _redis = redis;
        Console.WriteLine($"== soak: {_settings.Nodes} node processes × {_settings.ClientsPerNode} clients, {_settings.RatePerClient}/s per client, " +
                          $"MaxLength {_settings.MaxLength}, {_settings.Duration.TotalMinutes:0.#} min of random overlapping faults (seed {_settings.Seed})");
        using var stop = new CancellationTokenSource();
        var faultTasks = new List<Task>();
        var monitor = Task.CompletedTask;
        SoakOutcome outcome;
        try
        {
            for (var i = 0; i < _settings.Nodes; i++)
            {
                await StartNodeAsync(i, lifetimeMinutes, stop.Token);
            }

            var injectUntil = Stopwatch.GetTimestamp() + (long)(_settings.Duration.TotalSeconds * Stopwatch.Frequency);
            monitor = MonitorAsync(stop.Token);
            faultTasks.AddRange(Enum.GetValues<SoakFault>().Select(f => Task.Run(() => FaultLoopAsync(f, injectUntil, lifetimeMinutes, stop.Token))));
            await Task.WhenAll(faultTasks);
            _log.Note("soak: fault loops done; stopping the senders");
            await stop.CancelAsync();
            Task[] senders;
            lock (_gate)
            {
                senders = [.. _senders];
            }

            await Task.WhenAll(senders).WaitAsync(SendTimeout + TimeSpan.FromSeconds(10));
            var settled = await SettleAsync();
            await monitor;
            // Accounted before the clients are disposed: a client closed by then lost its node during the run.
            outcome = Report(settled, clock.Elapsed);
        }
        finally
        {
            await stop.CancelAsync();
            SoakClient[] clients;
            lock (_gate)
            {
                clients = [.. _clients];
            }

            foreach (var node in _nodes.OfType<NodeProcess>())
            {
                node.SampleMemory();
            }

            await Task.WhenAll(clients.Select(c => c.DisposeAsync().AsTask()));
            await Task.WhenAll(_nodes.OfType<NodeProcess>().Select(n => n.DisposeAsync().AsTask()));
        }

        return outcome;
    }

    private async Task StartNodeAsync(int index, int lifetimeMinutes, CancellationToken stop)
    {
        int incarnation;
        lock (_gate)
        {
            incarnation = _allIncarnations.Count(n => n.Index == index) + 1;
        }

        var node = await NodeProcess.StartAsync(index, incarnation, _redis.ConnectionString, _settings.MaxLength, lifetimeMinutes, _log);
        lock (_gate)
        {
            _nodes[index] = node;
            _allIncarnations.Add(node);
        }

        for (var k = 0; k < _settings.ClientsPerNode; k++)
        {
            var id = Interlocked.Increment(ref _nextClientId);
            var client = await SoakClient.ConnectAsync(id, node);
            lock (_gate)
            {
                _clients.Add(client);
                _senders.Add(Task.Run(() => SendLoopAsync(client, stop), CancellationToken.None));
            }
        }
    }

    private async Task SendLoopAsync(SoakClient client, CancellationToken stop)
    {
        var period = TimeSpan.FromSeconds(1 / _settings.RatePerClient);
        var random = new Random(client.Id);
        using var timer = new PeriodicTimer(period);
        long seq = 0;
        try
        {
            while (await timer.WaitForNextTickAsync(stop) && client.IsOpen)
            {
                seq++;
                var kind = (SendKind)(seq % 4);
                var (address, target) = Address(client, kind, random);
                if (address is null)
                {
                    kind = SendKind.All;
                    address = "";
                }

                var message = new SentMessage(client.Id, seq, kind, address, target, client.Node.Index, client.Node.BackplaneId, Stopwatch.GetTimestamp());
                _sent.Enqueue(message);
                try
                {
                    // Not the stop token: a send in flight at the end is allowed to complete.
                    using var timeout = new CancellationTokenSource(SendTimeout);
                    await client.SendAsync(message, timeout.Token);
                    message.Outcome = 1;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    message.Outcome = 2;
                }
                finally
                {
                    message.End = Stopwatch.GetTimestamp();
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
    }

    /// <summary>The address of the next message of <paramref name="kind"/>: a room, or a user / connection on another
    /// node that is connected now; null when there is none (then it goes to all).</summary>
    private (string? Address, int Target) Address(SoakClient client, SendKind kind, Random random)
    {
        if (kind == SendKind.All)
        {
            return ("", -1);
        }

        if (kind == SendKind.Room)
        {
            return ("r" + random.Next(2), -1);
        }

        SoakClient[] others;
        lock (_gate)
        {
            others = [.. _clients.Where(c => c.Node.Index != client.Node.Index && c.IsOpen)];
        }

        if (others.Length == 0)
        {
            return (null, -1);
        }

        var target = others[random.Next(others.Length)];
        return (kind == SendKind.User ? target.User : target.ConnectionId, target.Id);
    }

    private async Task FaultLoopAsync(SoakFault fault, long injectUntil, int lifetimeMinutes, CancellationToken stop)
    {
        var random = new Random(_settings.Seed + (int)fault);
        // Bounded: one fault per FaultIntervalMin at most, until injectUntil.
        while (Stopwatch.GetTimestamp() < injectUntil && !stop.IsCancellationRequested)
        {
            var wait = _settings.FaultIntervalMin + (random.NextDouble() * (_settings.FaultIntervalMax - _settings.FaultIntervalMin));
            var left = TimeSpan.FromSeconds((injectUntil - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);
            if (wait >= left)
            {
                break;
            }

            // The random interval between two faults of this kind (the schedule, not a synchronisation).
            await Task.Delay(wait, stop);
            try
            {
                await InjectAsync(fault, random, lifetimeMinutes, stop);
            }
            catch (Exception ex) when (ex is IOException or TimeoutException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                _log.Note($"fault {fault} failed: {ex.GetType().Name}: {ex.Message}");
                Console.WriteLine($"   fault {fault} failed: {ex.Message}");
            }
        }
    }

    private async Task InjectAsync(SoakFault fault, Random random, int lifetimeMinutes, CancellationToken stop)
    {
        var down = _settings.RedisDownMin + (random.NextDouble() * (_settings.RedisDownMax - _settings.RedisDownMin));
        switch (fault)
        {
            case SoakFault.RedisRestartWithData or SoakFault.RedisRestartEmpty or SoakFault.RedisFreeze or SoakFault.ClientKill:
                await _redisLock.WaitAsync(stop);
                try
                {
                    var begin = Stopwatch.GetTimestamp();
                    string detail;
                    switch (fault)
                    {
                        case SoakFault.RedisRestartWithData:
                            await _redis.RestartAsync(down);
                            detail = $"SHUTDOWN, {down.TotalSeconds:0.0} s down";
                            break;
                        case SoakFault.RedisRestartEmpty:
                            await _redis.RestartEmptyAsync(down);
                            detail = $"SIGKILL, data deleted, {down.TotalSeconds:0.0} s down";
                            break;
                        case SoakFault.RedisFreeze:
                            _redis.Pause();
                            try
                            {
                                // The length of the freeze (the fault itself).
                                await Task.Delay(down, CancellationToken.None);
                            }
                            finally
                            {
                                _redis.Resume();
                            }

                            detail = $"SIGSTOP {down.TotalSeconds:0.0} s";
                            break;
                        default:
                            detail = $"killed {await _redis.ClientKillAsync("normal")} connections";
                            break;
                    }

                    Record(fault, begin, detail);
                }
                finally
                {
                    _redisLock.Release();
                }

                break;
            case SoakFault.NodeKill or SoakFault.SlowReader:
                var index = random.Next(_settings.Nodes);
                await _nodeLocks[index].WaitAsync(stop);
                try
                {
                    var node = _nodes[index] ?? throw new InvalidOperationException($"Node {index} is not running.");
                    var begin = Stopwatch.GetTimestamp();
                    if (fault == SoakFault.NodeKill)
                    {
                        node.Kill();
                        await node.WaitForExitAsync(TimeSpan.FromSeconds(10));
                        // How long the node stays dead (the fault itself).
                        await Task.Delay(_settings.NodeDownTime, CancellationToken.None);
                        await StartNodeAsync(index, lifetimeMinutes, stop);
                        Record(fault, begin, $"node {index} killed (pid {node.Pid}), restarted as incarnation {_nodes[index]!.Incarnation}", index);
                    }
                    else
                    {
                        var gapsBefore = node.Gaps.Sum(g => g.Missing);
                        node.Freeze();
                        try
                        {
                            // The length of the freeze (the fault itself).
                            await Task.Delay(_settings.SlowReaderFreeze, CancellationToken.None);
                        }
                        finally
                        {
                            node.Thaw();
                        }

                        Record(fault, begin, $"node {index} frozen {_settings.SlowReaderFreeze.TotalSeconds:0} s (gap entries reported before: {gapsBefore})", index);
                    }
                }
                finally
                {
                    _nodeLocks[index].Release();
                }

                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(fault));
        }
    }

    private void Record(SoakFault fault, long begin, string detail, int node = -1)
    {
        _faults.Enqueue(new FaultWindow(fault, begin, Stopwatch.GetTimestamp(), detail, node));
        _log.Note($"fault {fault}: {detail}");
    }

    /// <summary>Samples every node's peak memory each second, and prints progress every minute.</summary>
    private async Task MonitorAsync(CancellationToken stop)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        var ticks = 0;
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                NodeProcess[] nodes;
                lock (_gate)
                {
                    nodes = [.. _nodes.OfType<NodeProcess>()];
                }

                foreach (var node in nodes)
                {
                    node.SampleMemory();
                }

                if (++ticks % 60 == 0)
                {
                    Console.WriteLine($"   +{ticks / 60} min: sent {_sent.Count(m => m.Outcome == 1):N0}, failed {_sent.Count(m => m.Outcome == 2):N0}, " +
                                      $"faults {_faults.Count}, load {LoadAverage()}");
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
    }

    /// <summary>Waits until no client received anything for <see cref="SoakSettings.Quiet"/>; false if that did not
    /// happen within <see cref="SoakSettings.SettleDeadline"/>.</summary>
    private async Task<bool> SettleAsync()
    {
        var deadline = Stopwatch.StartNew();
        var quiet = Stopwatch.StartNew();
        var last = -1L;
        while (deadline.Elapsed < _settings.SettleDeadline)
        {
            long total;
            lock (_gate)
            {
                total = _clients.Sum(c => c.ArrivalCount);
            }

            if (total != last)
            {
                last = total;
                quiet.Restart();
            }
            else if (quiet.Elapsed >= _settings.Quiet)
            {
                return true;
            }

            // Polling interval of the bounded settle wait.
            await Task.Delay(200);
        }

        return false;
    }

    private SoakOutcome Report(bool settled, TimeSpan elapsed)
    {
        SoakClient[] clients;
        NodeProcess[] incarnations;
        lock (_gate)
        {
            clients = [.. _clients];
            incarnations = [.. _allIncarnations];
        }

        var sent = _sent.ToArray();
        var faults = _faults.ToArray();
        var account = SoakAccount.Build(sent, clients, faults);
        var counts = Enum.GetValues<SoakFault>().ToDictionary(f => f, f => faults.Count(w => w.Fault == f));
        var gapsReported = incarnations.Sum(n => n.Gaps.Sum(g => g.Missing));
        var memory = incarnations.GroupBy(n => n.Index).OrderBy(g => g.Key)
            .Select(g => (g.Key, g.Max(n => n.PeakMemory), g.Count())).ToList();
        var driver = NodeProcess.PeakResidentBytes(Environment.ProcessId);
        var peakOutbox = incarnations.Max(n => n.PeakOutbox);

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"## Soak: {_settings.Duration.TotalMinutes:0.#} minutes of random overlapping faults");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"{_settings.Nodes} chat-like node processes (Kestrel, SignalR, `AddRedisStreams`, `MaxLength` {_settings.MaxLength}) on one " +
                        $"redis-server (AOF, `appendfsync always`), {_settings.ClientsPerNode} WebSocket clients on each; every client sends " +
                        $"{_settings.RatePerClient}/s, in turn to all, a room, a user and a connection on another node (each call awaited). One loop per " +
                        $"fault kind fires its fault every {_settings.FaultIntervalMin.TotalSeconds:0}–{_settings.FaultIntervalMax.TotalSeconds:0} s, " +
                        $"overlapping the others (Redis faults one at a time, node faults one per node at a time). Seed {_settings.Seed}; " +
                        $"took {elapsed.TotalMinutes:0.0} min; settled: {(settled ? "yes" : "**no**")}; load average at the end {LoadAverage()}.");
        text.AppendLine();
        text.AppendLine("| fault kind | fired | sent (acked) | failed sends | failed but delivered | deliveries expected | delivered | lost | missed in a reported gap | lost by Redis with their sender's node | duplicated | reordered |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var (name, row) in account.Rows)
        {
            var fired = Enum.GetValues<SoakFault>().Where(f => SoakAccount.RowName(f) == name).Select(f => counts[f].ToString(CultureInfo.InvariantCulture)).FirstOrDefault() ?? "";
            text.AppendLine(Row(name, fired, row));
        }

        text.AppendLine(Row("**all messages**", faults.Length.ToString(CultureInfo.InvariantCulture), account.Total));
        text.AppendLine();
        text.AppendLine("A message is counted in the row of every fault active when it was sent (from 1 s before the fault to " +
                        $"{SoakAccount.Aftermath.TotalSeconds:0} s after it), so rows overlap; the last row counts each message once.");
        text.AppendLine();
        var perNode = incarnations.Where(n => !n.Gaps.IsEmpty || account.MissedByNode.ContainsKey(n))
            .Select(n => $"node {n.Index}.{n.Incarnation}: reported {n.Gaps.Sum(g => g.Missing):N0}, its clients missed {account.MissedByNode.GetValueOrDefault(n)?.Count ?? 0:N0}");
        text.AppendLine("- Gaps per node incarnation (packets the node reported missing in `Gap:` lines; distinct messages its clients really missed, " +
                        "which can only be fewer: a gap also holds packets for no client of that node, e.g. to a user elsewhere): " +
                        string.Join("; ", perNode) + ".");
        text.AppendLine($"- Gaps: the nodes reported {gapsReported:N0} missing packets in {incarnations.Sum(n => n.Gaps.Count):N0} `Gap:` log lines; " +
                        $"the clients really missed {account.Total.MissedInReportedGap:N0} deliveries, each on a node that reported a gap from the sender's node after the send; " +
                        $"{account.Total.Lost:N0} deliveries were missed without a reported gap.");
        var afterFreeze = 30 * Stopwatch.Frequency;
        var freezes = faults.Where(f => f.Fault == SoakFault.SlowReader).ToArray();
        var freezesWithGap = freezes.Count(f => incarnations.Any(n => n.Index == f.Node && n.Gaps.Any(g => g.At >= f.Begin && g.At <= f.End + afterFreeze)));
        text.AppendLine($"- Slow readers: {freezesWithGap} of the {freezes.Length} nodes frozen past trimming reported a gap within 30 s of their thaw. Faults fired: " +
                        string.Join(", ", counts.Select(c => $"{SoakAccount.RowName(c.Key)} ×{c.Value}")) + ".");
        text.AppendLine($"- Peak memory (VmHWM) per node, highest over its incarnations: " +
                        string.Join(", ", memory.Select(m => $"node {m.Item1} {m.Item2 / (1024.0 * 1024):0} MiB ({m.Item3} incarnations)")) +
                        $"; the driver process (all clients) {driver / (1024.0 * 1024):0} MiB.");
        text.AppendLine(CultureInfo.InvariantCulture, $"- Peak outbox depth (any node, sampled every 50 ms): {peakOutbox:N0} packets.");
        if (account.LostExamples.Count > 0)
        {
            text.AppendLine("- Lost deliveries (first 20): " + string.Join("; ", account.LostExamples) + ".");
        }

        if (account.ReorderExamples.Count > 0)
        {
            text.AppendLine("- Reordered arrivals (first 20): " + string.Join("; ", account.ReorderExamples) + ".");
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"- Clients: {clients.Length} in all ({clients.Count(c => c.ClosedAt != 0)} lost with their node).");
        // Per node incarnation, the distinct messages its clients missed in reported gaps can be no more than the packets
        // it reported missing: more would mean a message was excused by a gap that did not hold it.
        var underReported = incarnations
            .Where(n => (account.MissedByNode.GetValueOrDefault(n)?.Count ?? 0) > n.Gaps.Sum(g => g.Missing))
            .Select(n => $"node {n.Index}.{n.Incarnation} reported {n.Gaps.Sum(g => g.Missing):N0} missing, its clients missed {account.MissedByNode[n].Count:N0}")
            .ToList();
        var markdown = text.ToString();
        return new SoakOutcome(account, counts, gapsReported, account.Total.MissedInReportedGap, underReported, memory, driver, peakOutbox, settled, elapsed, markdown);
    }

    private static string Row(string name, string fired, AccountRow r) => string.Create(CultureInfo.InvariantCulture,
        $"| {name} | {fired} | {r.Sent:N0} | {r.Failed:N0} | {r.FailedButDelivered:N0} | {r.Expected:N0} | {r.Delivered:N0} | {r.Lost:N0} | {r.MissedInReportedGap:N0} | {r.LostWithSenderNode:N0} | {r.Duplicated:N0} | {r.Reordered:N0} |");

    private static string LoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ')[0];
        }
        catch (IOException)
        {
            return "unknown";
        }
    }
}
