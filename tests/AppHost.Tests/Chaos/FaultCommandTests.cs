using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using AppHost.Faults;
using AppHost.Tests.Infrastructure;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace AppHost.Tests.Chaos;

/// <summary>
/// The app with its load generator on (<c>Traffic:Rate=5</c>, counts logged every second, a message lost when it has
/// not reached every user <see cref="TrafficDeadline"/> after its send completed), and every project's spans in the
/// test's OTLP receiver. The generator's console output is captured from the moment the app is healthy.
/// </summary>
public sealed class FaultCommandAppFixture : TelemetryAppFixture, IDisposable
{
    /// <summary>The generator's delivery deadline in these tests (20 s in the app).</summary>
    public static readonly TimeSpan TrafficDeadline = TimeSpan.FromSeconds(15);

    private ResourceLogCapture? _trafficLog;

    internal ResourceLogCapture TrafficLog => _trafficLog ?? throw new InvalidOperationException("The app is not started.");

    protected override IEnumerable<string> AppHostArgs() => [.. base.AppHostArgs(), AppHostSettings.TrafficRateKey + "=5"];

    protected override void ConfigureBuilder(IDistributedApplicationTestingBuilder builder)
    {
        base.ConfigureBuilder(builder);
        var traffic = builder.Resources.OfType<ProjectResource>().Single(r => r.Name == AppHostSettings.TrafficResourceName);
        builder.CreateResourceBuilder(traffic)
            .WithEnvironment("Traffic__ReportInterval", "00:00:01")
            .WithEnvironment("Traffic__DeliveryDeadline", TrafficDeadline.ToString("c", CultureInfo.InvariantCulture));
    }

    protected override void OnStarted() => _trafficLog = new ResourceLogCapture(App, [AppHostSettings.TrafficResourceName]);

    public void Dispose() => _trafficLog?.Dispose();
}

/// <summary>
/// The dashboard's fault commands, invoked the way the dashboard invokes them (by name, through the app's
/// <c>ResourceCommandService</c>), on the real app while clients on every node send to all, a room, a user and one
/// connection (<see cref="ChaosTraffic"/>), and while the load generator runs. Each test checks the fault's effect on
/// the process or on Redis, what the traces show of it, and that no live client lost, doubled or reordered a message.
/// </summary>
public sealed class FaultCommandTests(FaultCommandAppFixture app, ITestOutputHelper output) : IClassFixture<FaultCommandAppFixture>
{
    private const string Redis = AppHostSettings.RedisResourceName;
    private const int MessagesPerSender = 100;
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);

    /// <summary>The generator's count line (TrafficGenerator/TrafficLog.cs).</summary>
    private static readonly Regex TotalsLine = new(
        @"Traffic: sent (?<sent>\d+), delivered (?<delivered>\d+), lost (?<lost>\d+) \(on their way: (?<pending>\d+); failed to send: (?<failed>\d+); duplicates: (?<duplicates>\d+)",
        RegexOptions.CultureInvariant);

    /// <summary>The generator's log lines when a user connects or loses its connection (TrafficGenerator/TrafficLog.cs).</summary>
    private static readonly Regex ConnectLine = new(@"(?<user>traffic-\d+) connected to (?<node>\S+)", RegexOptions.CultureInvariant);
    private static readonly Regex DisconnectLine = new(@"(?<user>traffic-\d+) lost its connection to (?<node>\S+)", RegexOptions.CultureInvariant);

    [Fact]
    public async Task Freeze_5_s_stops_the_redis_process_for_five_seconds_and_loses_nothing()
    {
        var pid = await ResourceProcess.ReportedProcessIdAsync(app.App.ResourceNotifications, Redis, CancellationToken.None);
        using var redisLog = new ResourceLogCapture(app.App, [Redis]);
        var frozenAt = DateTimeOffset.UtcNow;
        var thawedAt = DateTimeOffset.UtcNow;
        await UnderTrafficAsync("freeze 5 s", async ct =>
        {
            frozenAt = DateTimeOffset.UtcNow;
            var started = Stopwatch.GetTimestamp();
            var command = app.App.ResourceCommands.ExecuteCommandAsync(Redis, FaultCommands.FreezeRedis, ct);
            await Eventually.TrueAsync(() => Task.FromResult(ResourceProcess.State(pid) == "T"), TimeSpan.FromSeconds(4), "redis-server to be stopped (state T)");
            var result = await command;
            thawedAt = DateTimeOffset.UtcNow;
            var took = Stopwatch.GetElapsedTime(started);

            AssertSucceeded(result);
            Assert.True(took >= FaultCommands.FreezeDuration - TimeSpan.FromMilliseconds(100), $"the command returned after {took}");
            Assert.NotEqual("T", ResourceProcess.State(pid));
            Assert.Contains($"(pid {pid}) was frozen for 5.", result.Message, StringComparison.Ordinal);
        });

        // The traces show the freeze: a message sent while Redis was frozen has a publish span that lasts until Redis
        // answered again (with publish.retry events where the append timed out first).
        await Eventually.TrueAsync(
            () => Task.FromResult(app.Receiver.Spans.Any(s => s.Name == "publish {signalr}"
                && s.Start >= frozenAt && s.End >= thawedAt - TimeSpan.FromSeconds(1) && s.End - s.Start >= TimeSpan.FromSeconds(2))),
            TimeSpan.FromSeconds(10), "a publish span held across the freeze");
        WriteTraceEvidence(frozenAt);

        // The command and its outcome are in redis' console log on the dashboard.
        await AssertLoggedAsync(redisLog, "Fault 'Freeze 5 s' on redis: started", $"Fault 'Freeze 5 s' on redis: redis-server (pid {pid}) was frozen for");
    }

    [Fact]
    public async Task Kill_client_connections_cuts_every_client_of_redis_they_reconnect_and_nothing_is_lost()
    {
        var before = await ClientListAsync();
        var faultAt = DateTimeOffset.UtcNow;
        await UnderTrafficAsync("kill client connections", async ct =>
        {
            faultAt = DateTimeOffset.UtcNow;
            var result = await app.App.ResourceCommands.ExecuteCommandAsync(Redis, FaultCommands.KillRedisClients, ct);
            AssertSucceeded(result);
            var counts = Regex.Match(result.Message ?? "", @"Killed (\d+) normal and (\d+) pub/sub", RegexOptions.CultureInvariant);
            Assert.True(counts.Success, result.Message);
            // Every node holds at least its command connection and its reader's connection.
            Assert.True(int.Parse(counts.Groups[1].Value, CultureInfo.InvariantCulture) >= 2 * app.NodeCount, result.Message);
        });

        // None of the connections from before is left; the nodes are connected again.
        var after = await ClientListAsync();
        Assert.Empty(after.Keys.Intersect(before.Keys));
        Assert.True(after.Count >= 2 * app.NodeCount, $"{after.Count} clients connected after the kill");

        // Traces show the kill where an append was in flight on a cut connection (publish.retry); not asserted: with no
        // append in flight at that instant the reconnect is invisible to the senders.
        WriteTraceEvidence(faultAt);
    }

    [Fact]
    public async Task Restart_keep_data_restarts_redis_with_its_keys_and_loses_nothing()
    {
        var (faultAt, marker) = await RestartUnderTrafficAsync("restart, keep data", FaultCommands.RestartRedisKeepingData);
        Assert.Equal("kept", marker);
        WriteTraceEvidence(faultAt);
    }

    [Fact]
    public async Task Restart_empty_restarts_redis_without_its_keys_the_nodes_republish_and_nothing_is_lost()
    {
        var (faultAt, marker) = await RestartUnderTrafficAsync("restart empty", FaultCommands.RestartRedisEmpty);
        Assert.Null(marker);
        await Eventually.TrueAsync(
            () => Task.FromResult(app.Receiver.Spans.Any(s => s.Name == "republish {signalr}" && s.Start >= faultAt)),
            TimeSpan.FromSeconds(10), "a republish span after the empty restart");
        WriteTraceEvidence(faultAt);
    }

    [Fact]
    public async Task A_restart_whose_first_start_fails_on_a_taken_port_starts_redis_once_more_and_succeeds()
    {
        var oldPid = await ResourceProcess.ReportedProcessIdAsync(app.App.ResourceNotifications, Redis, CancellationToken.None);
        var port = ListeningPort(oldPid);
        using var redisLog = new ResourceLogCapture(app.App, [Redis]);
        using var timeout = new CancellationTokenSource(Deadline);
        var command = app.App.ResourceCommands.ExecuteCommandAsync(Redis, FaultCommands.RestartRedisKeepingData, timeout.Token);

        // While Redis is down (6 s), another socket takes its port: the first start exits at once ("Address already in use").
        // The socket lets go once the failure is logged; the next start may still find it there (then a third one runs).
        await Eventually.TrueAsync(() => Task.FromResult(!ResourceProcess.IsAlive(oldPid)), TimeSpan.FromSeconds(20), "redis-server to exit");
        using (var squatter = new TcpListener(IPAddress.Loopback, port))
        {
            squatter.Start();
            await Eventually.TrueAsync(
                () => Task.FromResult(redisLog.Lines.Any(l => l.Contains("did not come up healthy after a fault's restart (attempt 1)", StringComparison.Ordinal))),
                TimeSpan.FromSeconds(40), "the command to log its failed first start");
        }

        var result = await command;
        AssertSucceeded(result);
        var newPid = await ResourceProcess.ReportedProcessIdAsync(app.App.ResourceNotifications, Redis, timeout.Token);
        Assert.NotEqual(oldPid, newPid);
        Assert.Contains($"(pid {newPid})", result.Message, StringComparison.Ordinal);
        await app.WaitUntilHealthyAsync([Redis, .. app.NodeNames], timeout.Token);
    }

    /// <summary>The port a running redis-server listens on, from its process title ("redis-server 127.0.0.1:port").</summary>
    private static int ListeningPort(int pid)
    {
        var title = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Trim();
        var port = Regex.Match(title, @"127\.0\.0\.1:(\d+)", RegexOptions.CultureInvariant);
        Assert.True(port.Success, "redis-server's process title: " + title);
        return int.Parse(port.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Writes a marker key, runs a restart <paramref name="command"/> under traffic, and checks what both restarts do: a
    /// new redis-server process, the old one gone, and (Redis stayed down longer than the nodes' command timeout) appends
    /// made meanwhile that failed and were retried. Returns when the command started and the marker's value afterwards.
    /// </summary>
    private async Task<(DateTimeOffset FaultAt, string? Marker)> RestartUnderTrafficAsync(string fault, string command)
    {
        var marker = "fault-test:" + Guid.NewGuid().ToString("N");
        await ExecuteOnRedisAsync(db => db.StringSetAsync(marker, "kept"));
        var oldPid = await ResourceProcess.ReportedProcessIdAsync(app.App.ResourceNotifications, Redis, CancellationToken.None);
        var faultAt = DateTimeOffset.UtcNow;
        await UnderTrafficAsync(fault, async ct =>
        {
            faultAt = DateTimeOffset.UtcNow;
            AssertSucceeded(await app.App.ResourceCommands.ExecuteCommandAsync(Redis, command, ct));
        });

        var newPid = await ResourceProcess.ReportedProcessIdAsync(app.App.ResourceNotifications, Redis, CancellationToken.None);
        Assert.NotEqual(oldPid, newPid);
        Assert.False(ResourceProcess.IsAlive(oldPid));
        await AssertARetriedPublishSinceAsync(faultAt);
        return (faultAt, (string?)await ExecuteOnRedisAsync(db => db.StringGetAsync(marker)));
    }

    [Fact]
    public async Task Kill_on_a_chat_node_kills_its_process_the_rest_loses_nothing_and_the_generator_counts_no_loss()
    {
        var victim = app.NodeNames[^1];
        var appPid = await ResourceProcess.ApplicationProcessIdAsync(app.App.ResourceNotifications, victim, CancellationToken.None);
        using var victimLog = new ResourceLogCapture(app.App, [victim]);
        var faultAt = DateTimeOffset.UtcNow;
        try
        {
            await UnderTrafficAsync("kill " + victim, async ct =>
            {
                faultAt = DateTimeOffset.UtcNow;
                var result = await app.App.ResourceCommands.ExecuteCommandAsync(victim, FaultCommands.KillNode, ct);
                AssertSucceeded(result);
                Assert.Contains($"(pid {appPid}) was killed with SIGKILL", result.Message, StringComparison.Ordinal);
                Assert.False(ResourceProcess.IsAlive(appPid));
                Assert.True(app.App.ResourceNotifications.TryGetCurrentState(victim, out var state));
                Assert.Contains(state.Snapshot.State?.Text, KnownResourceStates.TerminalStates);
            }, deadNodes: [victim]);
            await AssertLoggedAsync(victimLog, $"Fault 'Kill' on {victim}: started", $"Fault 'Kill' on {victim}: {victim}: its process (pid {appPid}) was killed with SIGKILL");

            try
            {
                await AssertTheGeneratorReconnectedAndLostNothingAsync(victim, faultAt);
            }
            catch
            {
                ChaosLog.WriteNodeLogs("traffic-generator", app.TrafficLog.Lines);
                throw;
            }
        }
        finally
        {
            using var restart = new CancellationTokenSource(Deadline);
            await AppFaults.StartAsync(app.App, victim, restart.Token); // leave the app whole for the other tests
        }
    }

    /// <summary>The generator's user on <paramref name="victim"/> lost its connection and connected again, to another node;
    /// and once every message sent around the kill is past the generator's deadline, it counted none lost.</summary>
    private async Task AssertTheGeneratorReconnectedAndLostNothingAsync(string victim, DateTimeOffset faultAt)
    {
        await Eventually.TrueAsync(
            () => Task.FromResult(app.TrafficLog.Entries.Any(e => e.At >= faultAt && e.Line.Contains("lost its connection to " + victim, StringComparison.Ordinal))),
            TimeSpan.FromSeconds(15), "a generator user to report its connection to " + victim + " lost");
        await Eventually.TrueAsync(
            () => Task.FromResult(app.TrafficLog.Entries.Any(e => e.At >= faultAt
                && ConnectLine.Match(e.Line) is { Success: true } connected && connected.Groups["node"].Value != victim)),
            TimeSpan.FromSeconds(30), "the generator user to connect again, to another node");
        // Counts logged once every message sent up to the kill (and a little after) is past the deadline.
        var settled = faultAt + FaultCommandAppFixture.TrafficDeadline + TimeSpan.FromSeconds(2);
        var totals = await TrafficTotalsAfterAsync(settled > DateTimeOffset.UtcNow ? settled : DateTimeOffset.UtcNow);
        output.WriteLine("generator: " + totals.Line);
        Assert.True(totals.Sent > 0 && totals.Delivered > 0, totals.Line);
        Assert.Equal(0, totals.Lost);
        Assert.Equal(0, totals.Duplicates);
        Assert.DoesNotContain(app.TrafficLog.Lines, l => l.Contains("LOST:", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_traffic_generator_sends_from_a_user_on_every_node_and_counts_what_arrives()
    {
        // One user per node: each was first pinned (by the balancer's affinity cookie) to a node the others are not on,
        // and every user is connected now (a user whose node was killed by another test reconnected elsewhere).
        // 60 s: a user cut off by an earlier test's fault reconnects with a growing pause (up to 10 s), through a balancer
        // that takes a node back only after its health checks.
        try
        {
            await Eventually.TrueAsync(
                () => Task.FromResult(UsersByNode(firstConnection: true).Count == app.NodeCount && UsersByNode(firstConnection: false).Values.Sum() == app.NodeCount),
                TimeSpan.FromSeconds(60), "the generator's users to have connected to every node, and to be connected");
        }
        catch (TimeoutException ex)
        {
            static string Show(Dictionary<string, int> byNode) => string.Join(", ", byNode.Select(p => $"{p.Key}: {p.Value}"));
            throw new TimeoutException(
                $"{ex.Message}. First connections by node: {Show(UsersByNode(firstConnection: true))}; connected now: " +
                $"{Show(UsersByNode(firstConnection: false))}. The generator's last lines:\n" + string.Join("\n", app.TrafficLog.Lines.TakeLast(25)), ex);
        }
        var start = await TrafficTotalsAfterAsync(DateTimeOffset.UtcNow);
        var later = await TrafficTotalsAfterAsync(DateTimeOffset.UtcNow + TimeSpan.FromSeconds(3));
        output.WriteLine("generator: " + later.Line);
        Assert.True(later.Sent >= start.Sent + 10, $"5 messages/s: {start.Line} -> {later.Line}");
        Assert.True(later.Delivered >= start.Delivered + 10, $"{start.Line} -> {later.Line}");
        Assert.Equal(0, later.Lost);
        Assert.Equal(0, later.Duplicates);

        // Its sends start their traces: the client's invocation span, the hub call on a node, the publish, and a receive on
        // every node.
        await Eventually.TrueAsync(
            () => Task.FromResult(app.Receiver.Spans
                .Where(s => s.ServiceName == AppHostSettings.TrafficResourceName && s.Name.EndsWith("/SendToRoom", StringComparison.Ordinal))
                .Any(send =>
                {
                    var trace = app.Receiver.Spans.Where(s => s.TraceId == send.TraceId).ToList();
                    return trace.Any(s => s.Name == "publish {signalr}")
                        && trace.Where(s => s.Name == "receive {signalr}").Select(s => s.ServiceName).Distinct().Count() == app.NodeCount;
                })),
            TimeSpan.FromSeconds(10), "a trace from the generator's SendToRoom through the publish to a receive on every node");
    }

    /// <summary>
    /// Starts <see cref="ChaosTraffic"/> on every node, injects <paramref name="fault"/> a quarter into the sends, and
    /// checks that every live receiver got every sent message once, in per-sender order.
    /// </summary>
    private async Task UnderTrafficAsync(string fault, Func<CancellationToken, Task> inject, IReadOnlyCollection<string>? deadNodes = null)
    {
        using var timeout = new CancellationTokenSource(Deadline);
        var ct = timeout.Token;
        await app.WaitUntilHealthyAsync([Redis, .. app.NodeNames], ct);
        using var logs = new ResourceLogCapture(app.App, app.NodeNames);
        await using var traffic = await ChaosTraffic.StartAsync(app.BalancerUrl, app.NodeNames, Guid.NewGuid().ToString("N")[..8], ct);
        var total = traffic.Senders.Count * MessagesPerSender;

        var sending = traffic.SendAsync(MessagesPerSender, Interval, ct);
        await Eventually.TrueAsync(() => Task.FromResult(traffic.Issued >= total / 4), Deadline, "traffic under way");
        await inject(ct);
        await sending;

        var report = await traffic.SettleAsync(TimeSpan.FromSeconds(60), deadNodes);
        ChaosLog.Write(output, "dashboard command: " + fault, report);
        if (report.Lost + report.Duplicates + report.Reordered > 0)
        {
            ChaosLog.WriteNodeLogs("command-" + fault.Replace(' ', '-').Replace(",", "", StringComparison.Ordinal), logs.Lines);
        }

        Assert.True(report.Sent > 0, report.ToString());
        Assert.Equal(0, report.Lost);
        Assert.Equal(0, report.Duplicates);
        Assert.Equal(0, report.Reordered);
        if (deadNodes is null)
        {
            Assert.Equal(total, report.Sent + report.FailedToSend);
            Assert.Equal(0, report.Unconfirmed);
        }
    }

    /// <summary>Waits until <paramref name="log"/> holds a line containing each of <paramref name="texts"/>.</summary>
    private static Task AssertLoggedAsync(ResourceLogCapture log, params string[] texts) => Eventually.TrueAsync(
        () => Task.FromResult(texts.All(text => log.Lines.Any(line => line.Contains(text, StringComparison.Ordinal)))),
        TimeSpan.FromSeconds(10), "the resource's console log to hold: " + string.Join(" / ", texts));

    /// <summary>A message sent across the fault shows it in its trace: its producer span has <c>publish.retry</c> events.</summary>
    private Task AssertARetriedPublishSinceAsync(DateTimeOffset faultAt) => Eventually.TrueAsync(
        () => Task.FromResult(app.Receiver.Spans.Any(s => s.Name == "publish {signalr}" && s.EventNames.Contains("publish.retry") && s.End >= faultAt)),
        TimeSpan.FromSeconds(10), "a publish span with a publish.retry event, ended after the fault");

    /// <summary>What the traces show of the fault: publish spans with <c>publish.retry</c> events, the longest publish
    /// span, republish spans; all since <paramref name="faultAt"/>.</summary>
    private void WriteTraceEvidence(DateTimeOffset faultAt)
    {
        var publishes = app.Receiver.Spans.Where(s => s.Name == "publish {signalr}" && s.End >= faultAt).ToList();
        var longest = publishes.Count == 0 ? TimeSpan.Zero : publishes.Max(s => s.End - s.Start);
        output.WriteLine($"traces since the fault: {publishes.Count} publish spans, {publishes.Count(s => s.EventNames.Contains("publish.retry"))} with publish.retry events, " +
            $"the longest {longest.TotalMilliseconds:0} ms; {app.Receiver.Spans.Count(s => s.Name == "republish {signalr}" && s.Start >= faultAt)} republish spans");
    }

    private void AssertSucceeded(ExecuteCommandResult result)
    {
        output.WriteLine("command result: " + result.Message);
        Assert.True(result.Success, result.Message);
    }

    /// <summary>The normal (non-pub/sub) client connections of Redis now, by id, with their address; without the
    /// connection that asks.</summary>
    private Task<IReadOnlyDictionary<long, string>> ClientListAsync() => WithRedisAsync<IReadOnlyDictionary<long, string>>(async redis =>
    {
        var server = redis.GetServers()[0];
        var me = (long)await server.ExecuteAsync("CLIENT", "ID");
        var list = (string?)await server.ExecuteAsync("CLIENT", "LIST", "TYPE", "normal") ?? "";
        return list.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split(' ').Select(f => f.Split('=', 2)).Where(f => f.Length == 2).ToDictionary(f => f[0], f => f[1]))
            .Select(fields => (Id: long.Parse(fields["id"], CultureInfo.InvariantCulture), Address: fields["addr"]))
            .Where(c => c.Id != me)
            .ToDictionary(c => c.Id, c => c.Address);
    });

    private Task<T> ExecuteOnRedisAsync<T>(Func<IDatabase, Task<T>> command)
        => WithRedisAsync(redis => command(redis.GetDatabase()));

    /// <summary>Runs <paramref name="use"/> on a fresh admin connection (the kill test kills pooled ones).</summary>
    private async Task<T> WithRedisAsync<T>(Func<ConnectionMultiplexer, Task<T>> use)
    {
        var connectionString = await app.App.GetConnectionStringAsync(Redis)
            ?? throw new InvalidOperationException("redis has no connection string.");
        var options = ConfigurationOptions.Parse(connectionString);
        options.AllowAdmin = true;
        await using var redis = await ConnectionMultiplexer.ConnectAsync(options);
        return await use(redis);
    }

    /// <summary>From the generator's log: how many of its users are connected to each node now, or were at their first
    /// connection.</summary>
    private Dictionary<string, int> UsersByNode(bool firstConnection)
    {
        var nodeOfUser = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var line in app.TrafficLog.Lines)
        {
            if (ConnectLine.Match(line) is { Success: true } connected)
            {
                if (!firstConnection || !nodeOfUser.ContainsKey(connected.Groups["user"].Value))
                {
                    nodeOfUser[connected.Groups["user"].Value] = connected.Groups["node"].Value;
                }
            }
            else if (!firstConnection && DisconnectLine.Match(line) is { Success: true } lost)
            {
                nodeOfUser[lost.Groups["user"].Value] = null;
            }
        }

        return nodeOfUser.Values.OfType<string>().GroupBy(n => n, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
    }

    /// <summary>The generator's first count line captured at or after <paramref name="at"/>.</summary>
    private async Task<TrafficTotals> TrafficTotalsAfterAsync(DateTimeOffset at)
    {
        TrafficTotals? totals = null;
        await Eventually.TrueAsync(
            () =>
            {
                totals = app.TrafficLog.Entries.Where(e => e.At >= at).Select(e => TrafficTotals.TryParse(e.Line)).FirstOrDefault(t => t is not null);
                return Task.FromResult(totals is not null);
            },
            at - DateTimeOffset.UtcNow + TimeSpan.FromSeconds(15),
            $"a count line of the generator after {at:HH:mm:ss}");
        return totals!;
    }

    private sealed record TrafficTotals(string Line, long Sent, long Delivered, long Lost, long Duplicates)
    {
        public static TrafficTotals? TryParse(string line)
        {
            var match = TotalsLine.Match(line);
            long Get(string name) => long.Parse(match.Groups[name].Value, CultureInfo.InvariantCulture);
            return match.Success ? new TrafficTotals(line, Get("sent"), Get("delivered"), Get("lost"), Get("duplicates")) : null;
        }
    }
}
