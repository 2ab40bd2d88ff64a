using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Benchmarks.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using RedisTestServer;

namespace Benchmarks.Scenarios;

/// <summary>One subject's nodes and clients, and how each cell addresses them (used by the cells and sweep scenarios).
/// Every message comes from server 0.</summary>
internal sealed class CellDeployment
{
    private static readonly TimeSpan JoinTimeout = TimeSpan.FromSeconds(10);

    private readonly CellsSettings _settings;
    private readonly IReadOnlyCollection<Cell> _cells;

    /// <param name="subject">What the deployment is.</param>
    /// <param name="cluster">Its nodes and clients, <paramref name="settings"/>.ClientsPerServer per node (the ceiling:
    /// all on one).</param>
    /// <param name="settings">Group size and windows.</param>
    /// <param name="cells">The cells it will run: <see cref="JoinGroupsAsync"/> joins only the groups those use.</param>
    /// <param name="addressed">How many clients the direct and one-node group cells address, spread evenly over the
    /// servers other than server 0 (the sweep keeps it the same at every node count); null: every client of those
    /// servers.</param>
    /// <param name="oneNode">How many clients the one-node direct cell addresses, the first of server 1 (the sweep keeps
    /// it the same at every node count); null: every client of server 1.</param>
    public CellDeployment(Subject subject, Cluster cluster, CellsSettings settings, IReadOnlyCollection<Cell> cells, int? addressed = null, int? oneNode = null)
    {
        Subject = subject;
        Cluster = cluster;
        _settings = settings;
        _cells = cells;
        var clients = cluster.Clients;
        Sinks = [.. clients.Select(_ => new ClientSink())];
        for (var i = 0; i < clients.Count; i++)
        {
            clients[i].Throughput = Sinks[i].OnMessage;
        }

        var hub = cluster.Hub(0);
        All = hub.Clients.All;

        // Groups spread over all servers: client i is in group i mod GroupCount (clients are numbered server by server).
        GroupCount = Math.Max(1, clients.Count / settings.GroupSize);
        GroupOf = [.. Enumerable.Range(0, clients.Count).Select(i => i % GroupCount)];
        GroupSizes = [.. Enumerable.Range(0, GroupCount).Select(g => GroupOf.Count(x => x == g))];
        GroupProxies = [.. Enumerable.Range(0, GroupCount).Select(g => hub.Clients.Group(GroupName("g", g)))];

        // Groups on one server each, on the servers other than server 0 (the sender), each a block of GroupSize of one
        // server's clients in the order they connected: every such client when addressed is null; else addressed /
        // GroupSize groups dealt to those servers in turn, so that the same groups of the same size exist at every node
        // count. None with a single server.
        // (The ceiling's single server and the publish path's client-less node have none.)
        var others = cluster.Nodes.Count - 1;
        LocalGroupOf = [.. Enumerable.Repeat(-1, clients.Count)];
        var localGroupCount = 0;
        if (others > 0 && clients.Count > 0)
        {
            var groupsPerServer = (settings.ClientsPerServer + settings.GroupSize - 1) / settings.GroupSize;
            localGroupCount = addressed is { } a ? Math.Max(1, a / settings.GroupSize) : others * groupsPerServer;
            for (var g = 0; g < localGroupCount; g++)
            {
                // Group g: the (g / others)-th block of server 1 + g % others.
                var server = 1 + (g % others);
                var first = (server * settings.ClientsPerServer) + (g / others * settings.GroupSize);
                var last = Math.Min(first + settings.GroupSize, Math.Min(clients.Count, (server + 1) * settings.ClientsPerServer));
                if (first >= last)
                {
                    throw new InvalidOperationException($"{localGroupCount} groups of {settings.GroupSize} do not fit on servers 1 to {others} of {settings.ClientsPerServer} clients each.");
                }

                for (var i = first; i < last; i++)
                {
                    LocalGroupOf[i] = g;
                }
            }
        }

        LocalGroupSizes = [.. Enumerable.Range(0, localGroupCount).Select(g => LocalGroupOf.Count(x => x == g))];
        LocalGroupProxies = [.. Enumerable.Range(0, localGroupCount).Select(g => hub.Clients.Group(GroupName("l", g)))];

        // Direct targets: the clients of the servers other than server 0, or the first addressed / (servers - 1) of
        // each of them. The ceiling has one server: it sends to the same number of clients (the same indices), all local.
        var targets = Enumerable.Range(0, clients.Count).Where(i => i >= settings.ClientsPerServer).ToArray();
        if (addressed is { } count && others > 0)
        {
            var perServer = count / others;
            if (perServer < 1 || perServer > settings.ClientsPerServer)
            {
                throw new InvalidOperationException($"{count} addressed clients do not spread over servers 1 to {others} of {settings.ClientsPerServer} clients each.");
            }

            targets = [.. targets.Where(i => i % settings.ClientsPerServer < perServer)];
        }

        (DirectResidue, DirectProxies) = Address(targets);

        // One-node direct targets: the first oneNode clients of server 1 (none with a single server).
        var onServer1 = others > 0 ? Math.Min(settings.ClientsPerServer, clients.Count - settings.ClientsPerServer) : 0;
        if (oneNode is { } wanted && wanted > onServer1)
        {
            throw new InvalidOperationException($"{wanted} addressed clients do not fit on server 1 of {settings.ClientsPerServer} clients.");
        }

        (OneNodeResidue, OneNodeProxies) = Address([.. Enumerable.Range(settings.ClientsPerServer, oneNode ?? onServer1)]);

        // Direct sends to the clients at these indices, round-robin: each client's residue (its place in the list, -1
        // when not in it) and a proxy per place.
        (int[] Residue, IClientProxy[] Proxies) Address(int[] indices)
        {
            int[] residue = [.. Enumerable.Repeat(-1, clients.Count)];
            for (var r = 0; r < indices.Length; r++)
            {
                residue[indices[r]] = r;
            }

            return (residue, [.. indices.Select(i => hub.Clients.Client(clients[i].ConnectionId))]);
        }
    }

    public Subject Subject { get; }

    public Cluster Cluster { get; }

    public bool PublishOnly { get; init; }

    public ClientSink[] Sinks { get; }

    public IClientProxy All { get; }

    public int GroupCount { get; }

    public int[] GroupOf { get; }

    public int[] GroupSizes { get; }

    public IClientProxy[] GroupProxies { get; }

    /// <summary>Per client, its group of <see cref="Cell.LocalGroups"/> (-1: none, the clients of server 0).</summary>
    public int[] LocalGroupOf { get; }

    public int[] LocalGroupSizes { get; }

    public IClientProxy[] LocalGroupProxies { get; }

    public int[] DirectResidue { get; }

    public IClientProxy[] DirectProxies { get; }

    /// <summary>Per client, its residue in <see cref="Cell.DirectOneNode"/> (-1: not addressed).</summary>
    public int[] OneNodeResidue { get; }

    public IClientProxy[] OneNodeProxies { get; }

    public bool Runs(Cell cell) => PublishOnly == (cell == Cell.PublishPath);

    /// <summary>Every client joins its groups (of the cells this deployment runs) through the server it is connected to.</summary>
    public async Task JoinGroupsAsync()
    {
        var clients = Cluster.Clients;
        for (var i = 0; i < clients.Count; i++)
        {
            var groups = Cluster.Hub(clients[i].Node).Groups;
            if (_cells.Contains(Cell.Groups))
            {
                using var timeout = new CancellationTokenSource(JoinTimeout);
                await groups.AddToGroupAsync(clients[i].ConnectionId, GroupName("g", GroupOf[i]), timeout.Token);
            }

            if (_cells.Contains(Cell.LocalGroups) && LocalGroupOf[i] >= 0)
            {
                using var timeout = new CancellationTokenSource(JoinTimeout);
                await groups.AddToGroupAsync(clients[i].ConnectionId, GroupName("l", LocalGroupOf[i]), timeout.Token);
            }
        }
    }

    /// <summary>For a cell: recipients per residue, the proxy per residue, and each client's residue (-1: none).</summary>
    public (int[] Targets, IClientProxy[] Proxies, Func<int, long> ResidueOf) Plan(Cell cell) => cell switch
    {
        Cell.Groups => (GroupSizes, GroupProxies, i => GroupOf[i]),
        Cell.LocalGroups when LocalGroupProxies.Length == 0 => throw new InvalidOperationException("Groups on one server other than the sender's need at least 2 servers."),
        Cell.LocalGroups => (LocalGroupSizes, LocalGroupProxies, i => LocalGroupOf[i]),
        Cell.Direct when DirectProxies.Length == 0 => throw new InvalidOperationException("Direct sends need clients beyond the first server's."),
        Cell.Direct => ([.. DirectProxies.Select(_ => 1)], DirectProxies, i => DirectResidue[i]),
        Cell.DirectOneNode when OneNodeProxies.Length == 0 => throw new InvalidOperationException("Direct sends to one other server need at least 2 servers."),
        Cell.DirectOneNode => ([.. OneNodeProxies.Select(_ => 1)], OneNodeProxies, i => OneNodeResidue[i]),
        Cell.PublishPath => ([0], [All], _ => -1),
        _ => ([Sinks.Length], [All], _ => 0),
    };

    public int Window(Cell cell) => cell switch
    {
        Cell.Broadcast64 or Cell.Broadcast1K => _settings.BroadcastWindow,
        Cell.PublishPath => _settings.PublishWindow,
        // The fixed-rate cell is not limited by a window; this only bounds it should delivery stop.
        Cell.FixedRate => Math.Max(_settings.FixedRate * 10, 1),
        _ => _settings.FanoutWindow,
    };

    private static string GroupName(string prefix, int group) => prefix + group.ToString(CultureInfo.InvariantCulture);
}

/// <summary>Runs one cell for one deployment and measures it (used by the cells and sweep scenarios): the Redis server,
/// the reusable run state, the results.</summary>
internal sealed partial class CellBench
{
    private static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan DrainDeadline = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan RedisBenchmarkTimeout = TimeSpan.FromSeconds(60);
    private static readonly string Payload64 = new('x', 64);
    private static readonly string Payload1K = new('x', 1024);

    private readonly CellsSettings _settings;
    private readonly RedisServer _redis;
    private readonly RunState _state;
    private int _run;

    public CellBench(CellsSettings settings, RedisServer redis)
    {
        _settings = settings;
        _redis = redis;
        _state = new RunState(settings.MaxMessagesPerRun);
    }

    public List<CellRun> Runs { get; } = [];

    /// <summary>Keeps a run and prints it; <paramref name="title"/> (default: the cell's) names it on the console.</summary>
    public void Record(CellRun run, string? title = null)
    {
        Runs.Add(run);
        title ??= run.Cell.Title();
        var what = run.RunName;
        var correctness = run.Failed ? $"  ** {run.Problems()} **" : "";
        Console.WriteLine(run.Cell == Cell.PublishPath
            ? $"   {title,-46} {what,-8} {run.Subject.Label(),-34} {Stats.F(run.SendsPerSecond, "#,0"),10} sends/s{correctness}"
            : $"   {title,-46} {what,-8} {run.Subject.Label(),-34} {Stats.F(run.DeliveriesPerSecond, "#,0"),10} deliveries/s " +
              $"p50 {Stats.F(run.P50Ms, "0.0")} p99 {Stats.F(run.P99Ms, "0.0")} ms, {Stats.F(run.CpuMicrosPerDelivery, "0.0")} µs CPU/delivery{correctness}");
    }

    public async Task<CellRun> RunAsync(CellDeployment deployment, Cell cell, int repeat)
    {
        var run = ++_run;
        var (targets, proxies, residueOf) = deployment.Plan(cell);
        var modulus = targets.Length;
        // The sender stops before a client's record of the run overflows (the publish path has no clients).
        var cap = cell == Cell.PublishPath ? _settings.MaxMessagesPerRun : Math.Min(_settings.MaxMessagesPerRun, (long)ClientSink.Capacity * modulus);
        var windowSize = deployment.Window(cell);
        using var window = new SemaphoreSlim(windowSize, windowSize);
        _state.Reset(run, targets, window, settleOnSend: cell == Cell.PublishPath);
        for (var i = 0; i < deployment.Sinks.Length; i++)
        {
            deployment.Sinks[i].Reset(run, modulus, residueOf(i), _state);
        }

        var payload = cell == Cell.Broadcast1K ? Payload1K : Payload64;
        var duration = repeat == 0 ? _settings.WarmupDuration : cell switch
        {
            Cell.FixedRate => _settings.FixedRateDuration,
            Cell.PublishPath => _settings.PublishDuration,
            _ => _settings.MaxRateDuration,
        };
        var load = LoadAverage();
        var redisCpuBefore = await RedisCpuSecondsAsync();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var cpuBefore = Environment.CpuUsage.TotalTime;
        // Thread-pool work items and lock contentions: each is a thread's hop or wait, which this VM makes expensive.
        var workItemsBefore = ThreadPool.CompletedWorkItemCount;
        var contentionsBefore = Monitor.LockContentionCount;
        var countsBefore = deployment.Cluster.Counters?.Snapshot();
        var start = Stopwatch.GetTimestamp();

        var stalled = false;
        long seq = 0;
        if (cell == Cell.FixedRate)
        {
            var count = Math.Min(cap, (long)Math.Round(duration.TotalSeconds * _settings.FixedRate));
            var period = Stopwatch.Frequency / (double)_settings.FixedRate;
            for (; seq < count; seq++)
            {
                var wait = start + (long)(seq * period) - Stopwatch.GetTimestamp();
                if (wait > 0)
                {
                    // The schedule; a sender that fell behind sends at once and catches up.
                    await Task.Delay(TimeSpan.FromSeconds(wait / (double)Stopwatch.Frequency));
                }

                if (!await window.WaitAsync(StallTimeout))
                {
                    stalled = true;
                    break;
                }

                _state.BeginSend(seq);
                _ = SendOneAsync(proxies[seq % modulus], run, seq, payload);
            }
        }
        else
        {
            var stopAt = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
            for (; seq < cap && Stopwatch.GetTimestamp() < stopAt; seq++)
            {
                if (!await window.WaitAsync(StallTimeout))
                {
                    stalled = true;
                    break;
                }

                _state.BeginSend(seq);
                _ = SendOneAsync(proxies[seq % modulus], run, seq, payload);
            }
        }

        var drained = await DrainAsync(deployment, seq);
        // Our nodes' reads, connection writes and dispatched messages during the run (none for the other subjects).
        var counts = countsBefore is { } before && deployment.Cluster.Counters?.Snapshot() is { } after
            ? (Reads: after.Reads - before.Reads, Writes: after.Writes - before.Writes, Dispatched: after.Dispatched - before.Dispatched)
            : default((long Reads, long Writes, long Dispatched)?);
        var cpuAfter = Environment.CpuUsage.TotalTime;
        var workItems = ThreadPool.CompletedWorkItemCount - workItemsBefore;
        var contentions = Monitor.LockContentionCount - contentionsBefore;
        var cpuEnd = Stopwatch.GetTimestamp();
        var allocatedAfter = GC.GetTotalAllocatedBytes(precise: true);
        var redisCpuAfter = await RedisCpuSecondsAsync();

        var sinks = deployment.Sinks;
        var end = cell == Cell.PublishPath ? _state.LastSendEnd : sinks.Max(s => s.LastArrival);
        var seconds = end > start ? Stopwatch.GetElapsedTime(start, end).TotalSeconds : double.NaN;
        var (sent, failed, hung, expected, deliveredOfSent, _) = _state.Tally();
        var deliveries = sinks.Sum(s => (long)s.Received);
        var histogram = new LatencyHistogram();
        foreach (var sink in sinks)
        {
            histogram.Add(sink.Histogram);
        }

        // The unit CPU is divided by: deliveries, or sends in the publish-path cell.
        var units = cell == Cell.PublishPath ? sent : deliveries;
        var cpu = (cpuAfter - cpuBefore).TotalSeconds;
        return new CellRun(
            cell, deployment.Subject, repeat, load, seconds, sent, failed, hung, deliveries, expected,
            Lost: expected - deliveredOfSent,
            Duplicates: sinks.Sum(s => (long)s.Duplicates),
            Reordered: sinks.Sum(s => (long)s.Reordered),
            Misdelivered: sinks.Sum(s => (long)s.Misdelivered),
            Stale: sinks.Sum(s => (long)s.Stale),
            Stalled: stalled || !drained,
            SendsPerSecond: sent / seconds,
            DeliveriesPerSecond: cell == Cell.PublishPath ? double.NaN : deliveries / seconds,
            P50Ms: histogram.PercentileMs(50),
            P99Ms: histogram.PercentileMs(99),
            AllocatedBytesPerSend: (allocatedAfter - allocatedBefore) / (double)Math.Max(seq, 1),
            CpuMicrosPerDelivery: units == 0 ? double.NaN : cpu * 1e6 / units,
            Cores: cpu / Stopwatch.GetElapsedTime(start, cpuEnd).TotalSeconds,
            RedisCpuMicrosPerDelivery: units == 0 || double.IsNaN(redisCpuBefore) || double.IsNaN(redisCpuAfter)
                ? double.NaN
                : (redisCpuAfter - redisCpuBefore) * 1e6 / units,
            Error: _state.FirstError,
            WorkItemsPerSend: workItems / (double)Math.Max(seq, 1),
            LockContentionsPerSend: contentions / (double)Math.Max(seq, 1),
            ReadsPerSend: counts is { } c ? c.Reads / (double)Math.Max(seq, 1) : double.NaN,
            MessagesPerWrite: counts is { Writes: > 0 } w ? w.Dispatched / (double)w.Writes : double.NaN);
    }

    /// <summary><c>redis-benchmark -c 50 -P 16 -n N -q</c> against the same server, as a child process; its requests/s.</summary>
    public async Task<CellRun> RedisBenchmarkAsync(Subject subject, int repeat)
    {
        var key = "cells-benchstream";
        string[] command = subject == Subject.RedisBenchmarkXadd ? ["XADD", key, "*", "f", "v"] : ["PUBLISH", "cells-benchchannel", "x"];
        var load = LoadAverage();
        var redisCpuBefore = await RedisCpuSecondsAsync();
        var clock = Stopwatch.StartNew();
        string? error = null;
        var rate = double.NaN;
        try
        {
            var startInfo = new ProcessStartInfo("redis-benchmark")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var arg in new[] { "-h", "127.0.0.1", "-p", _redis.Port.ToString(CultureInfo.InvariantCulture),
                                        "-c", CellsSettings.RedisBenchmarkClients.ToString(CultureInfo.InvariantCulture),
                                        "-P", CellsSettings.RedisBenchmarkPipeline.ToString(CultureInfo.InvariantCulture),
                                        "-n", _settings.RedisBenchmarkRequests.ToString(CultureInfo.InvariantCulture), "-q" }.Concat(command))
            {
                startInfo.ArgumentList.Add(arg);
            }

            using var process = Process.Start(startInfo) ?? throw new InvalidOperationException("Could not start redis-benchmark.");
            var output = process.StandardOutput.ReadToEndAsync();
            var errors = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(RedisBenchmarkTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill();
                throw new TimeoutException($"redis-benchmark did not finish within {RedisBenchmarkTimeout.TotalSeconds:0} s.");
            }

            // -q prints progress lines separated by carriage returns, then "<command>: <n> requests per second, p50=…".
            var matches = RequestsPerSecond().Matches(await output);
            if (process.ExitCode != 0 || matches.Count == 0)
            {
                throw new InvalidOperationException($"redis-benchmark exited with {process.ExitCode}: {(await errors).Trim()}");
            }

            rate = double.Parse(matches[^1].Groups[1].Value, CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or TimeoutException)
        {
            // Not installed or failed: the report says so; it is no correctness failure of a backplane.
            error = ex.Message;
            Console.WriteLine($"   redis-benchmark failed: {ex.Message}");
        }

        var redisCpuAfter = await RedisCpuSecondsAsync();
        await _redis.ExecuteAsync("DEL", key);
        var requests = double.IsNaN(rate) ? 0 : _settings.RedisBenchmarkRequests;
        return new CellRun(
            Cell.PublishPath, subject, repeat, load, clock.Elapsed.TotalSeconds, requests, 0, 0, 0, 0, 0, 0, 0, 0, 0, false,
            SendsPerSecond: rate, DeliveriesPerSecond: double.NaN, P50Ms: double.NaN, P99Ms: double.NaN, AllocatedBytesPerSend: double.NaN,
            CpuMicrosPerDelivery: double.NaN, Cores: double.NaN,
            RedisCpuMicrosPerDelivery: requests == 0 ? double.NaN : (redisCpuAfter - redisCpuBefore) * 1e6 / requests,
            Error: error);
    }

    private async Task SendOneAsync(IClientProxy proxy, int run, long seq, string payload)
    {
        try
        {
            await proxy.SendAsync(BenchClient.ThroughputMethod, run, seq, Stopwatch.GetTimestamp(), payload);
            _state.SendReturned(run, seq);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _state.SendThrew(run, seq, ex);
        }
        finally
        {
            _state.EndSend(run);
        }
    }

    /// <summary>Waits until every message sent is settled and every send returned; false if nothing moves for
    /// <see cref="StallTimeout"/> or it takes longer than <see cref="DrainDeadline"/>.</summary>
    private async Task<bool> DrainAsync(CellDeployment deployment, long sent)
    {
        var clock = Stopwatch.StartNew();
        var lastProgress = -1L;
        var lastChange = Stopwatch.StartNew();
        while (clock.Elapsed < DrainDeadline)
        {
            var settled = _state.Settled;
            if (settled == sent && _state.Outstanding == 0)
            {
                return true;
            }

            var progress = settled + deployment.Sinks.Sum(s => (long)s.Received) - _state.Outstanding;
            if (progress != lastProgress)
            {
                lastProgress = progress;
                lastChange.Restart();
            }
            else if (lastChange.Elapsed > StallTimeout)
            {
                return false;
            }

            // Polling interval of the bounded drain wait.
            await Task.Delay(2);
        }

        return false;
    }

    /// <summary>redis-server's own CPU time (user + system, from <c>INFO cpu</c>), in seconds; NaN if unavailable.</summary>
    private async Task<double> RedisCpuSecondsAsync()
    {
        try
        {
            var info = (await _redis.ExecuteAsync("INFO", "cpu")).ToString();
            double total = 0;
            foreach (var line in info.Split('\n'))
            {
                var parts = line.Trim().Split(':');
                if (parts.Length == 2 && parts[0] is "used_cpu_sys" or "used_cpu_user")
                {
                    total += double.Parse(parts[1], CultureInfo.InvariantCulture);
                }
            }

            return total;
        }
        catch (Exception ex) when (ex is StackExchange.Redis.RedisException or FormatException or TimeoutException)
        {
            return double.NaN;
        }
    }

    private static string LoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ')[0];
        }
        catch (IOException)
        {
            return "?";
        }
    }

    [GeneratedRegex(@"([0-9]+(?:\.[0-9]+)?) requests per second")]
    private static partial Regex RequestsPerSecond();
}
