using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using AppHost.Tests.Chaos;
using AppHost.Tests.Infrastructure;
using Xunit.Abstractions;

namespace AppHost.Tests.Cluster;

/// <summary>
/// Failovers of the real app's Redis Cluster (<c>Redis:Topology=cluster</c>: 3 masters, 3 replicas,
/// <c>cluster-node-timeout</c> 1 s; chat nodes with three streams) under the chaos tests' steady traffic (a sender on
/// every node: to all, a room, a user, one connection on another node). Each test faults the master of a stream a chat
/// node sends on — a slot and a master no earlier test of the app faulted when the nodes send on enough streams — in
/// its own window of traffic: SIGKILL (its replica is promoted), <c>CLUSTER FAILOVER</c> on its replica, or SIGSTOP
/// until its replica has taken over, then SIGCONT. Then the cluster is made whole again (a killed master restarted; it
/// comes back as a replica) for the next test, since the three share one app start (<see cref="ClusterApp"/>).
/// Counted like the other chaos tests: every sent message at every live receiver exactly once, in per-sender order;
/// a gap a node reports must equal the packets it really missed, and none may be missed (the sender's replay window
/// covers every write a failover loses). Each test appends its line to <c>TestResults/chaos-report.txt</c>.
/// </summary>
[Collection(ClusterApp.Name)]
public sealed partial class ClusterChaosTests(ClusterAppFixture app, ITestOutputHelper output)
{
    private const int MessagesPerSender = 160;
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan FailoverTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public Task Nothing_is_lost_when_the_master_of_a_senders_stream_is_killed_and_its_replica_promoted()
        => RunAsync("cluster app: SIGKILL master", "sigkill", allowedReordered: 0,
            async (redis, master, slot, ct) =>
            {
                await AppFaults.KillRedisServerAsync(app.App, master, ct);
                return await redis.WaitForNewMasterAsync(slot, master, FailoverTimeout);
            },
            // The killed master starts again and comes back as its successor's replica.
            (master, ct) => AppFaults.StartAsync(app.App, master, ct));

    [Fact]
    public Task Nothing_is_lost_in_a_manual_failover_of_a_senders_stream()
        => RunAsync("cluster app: CLUSTER FAILOVER", "failover", allowedReordered: 0,
            async (redis, master, slot, ct) =>
            {
                await redis.FailoverAsync(await redis.ReplicaOfAsync(master));
                return await redis.WaitForNewMasterAsync(slot, master, FailoverTimeout);
            },
            restore: null);

    /// <summary>Allows one reordered message, as <c>ClusterFailoverTests</c> does: the known open issue of README
    /// "Redis Cluster" (a frozen master that wakes up still answers the commands queued on its sockets).</summary>
    [Fact]
    public Task Nothing_is_lost_when_the_master_of_a_senders_stream_is_paused_until_its_replica_takes_over()
        => RunAsync("cluster app: SIGSTOP master", "sigstop", allowedReordered: 1,
            (redis, master, slot, ct) => AppFaults.PauseRedisServerUntilAsync(app.App, master, () => redis.WaitForNewMasterAsync(slot, master, FailoverTimeout), ct),
            restore: null);

    /// <param name="name">Names the file of the nodes' console output kept when the counts are not clean.</param>
    /// <param name="inject">Injects the fault on the master (a redis-N resource) of the slot, and returns the new master
    /// once it serves the slot.</param>
    /// <param name="restore">Brings the faulted master back, if the fault does not.</param>
    private async Task RunAsync(string fault, string name, int allowedReordered, Func<AppRedisCluster, string, int, CancellationToken, Task<string>> inject,
        Func<string, CancellationToken, Task>? restore)
    {
        using var timeout = new CancellationTokenSource(Deadline);
        var ct = timeout.Token;
        await using var redis = await AppRedisCluster.ConnectAsync(app.App, ct);
        await redis.WaitUntilWholeAsync(FailoverTimeout);
        var victim = await ChooseVictimAsync(redis);
        var faultedBefore = app.FaultedMasters.Contains(victim.Master);
        app.FaultedMasters.Add(victim.Master);
        app.FaultedSlots.Add(victim.Slot);

        var logStart = app.NodeLogs.Entries.Count;
        ChaosReport report;
        string newMaster;
        TimeSpan failedOver;
        var total = 0;
        try
        {
            await using var traffic = await ChaosTraffic.StartAsync(app.BalancerUrl, app.NodeNames, Guid.NewGuid().ToString("N")[..8], ct);
            total = traffic.Senders.Count * MessagesPerSender;
            var sending = traffic.SendAsync(MessagesPerSender, Interval, ct);
            await Eventually.TrueAsync(() => Task.FromResult(traffic.Issued >= total / 4), Deadline, "traffic under way");
            var clock = Stopwatch.StartNew();
            newMaster = await inject(redis, victim.Master, victim.Slot, ct);
            failedOver = clock.Elapsed;
            await sending;
            report = await traffic.SettleAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            if (restore is not null)
            {
                await restore(victim.Master, ct);
            }
            await redis.WaitUntilWholeAsync(FailoverTimeout);
        }

        var windowLines = app.NodeLogs.Entries.Skip(logStart).Select(e => e.Line).ToList();
        var gaps = app.NodeNames.ToDictionary(n => n, n => windowLines.Select(l => GapLine().Match(l))
            .Where(m => m.Success && m.Groups["resource"].Value == n).Sum(m => long.Parse(m.Groups["missing"].Value, CultureInfo.InvariantCulture)), StringComparer.Ordinal);
        var missed = report.MissedPackets;
        string Show(IReadOnlyDictionary<string, long> perNode) => string.Join(", ", perNode.Select(n => $"{n.Key} {n.Value}"));
        var missedPerNode = app.NodeNames.ToDictionary(n => n, n => (long)missed.GetValueOrDefault(n), StringComparer.Ordinal);
        ChaosLog.Write(output, fault,
            $"{victim.Master} (master of {victim.Stream}, sent on by {string.Join(" and ", victim.Senders)}{(faultedBefore ? ", faulted before" : "")}) " +
            $"replaced by {newMaster} after {failedOver.TotalMilliseconds:0} ms; {report}; gaps reported {gaps.Values.Sum()} ({Show(gaps)}), " +
            $"packets missed {missedPerNode.Values.Sum()} ({Show(missedPerNode)})");
        if (report.Lost + report.Duplicates + report.Reordered + gaps.Values.Sum() > 0)
        {
            ChaosLog.WriteNodeLogs("cluster-" + name, windowLines);
        }

        Assert.Equal(total, report.Sent + report.FailedToSend);
        Assert.Equal(0, report.FailedToSend);
        Assert.True(report.ExpectedDirect > 0, $"direct messages were sent ({report})");
        Assert.Equal(missedPerNode, gaps); // a gap reported is what the node missed, no more, no less
        Assert.Equal(0, report.Lost);
        Assert.Equal(0, report.Duplicates);
        Assert.InRange(report.Reordered, 0, allowedReordered);
        Assert.Equal(0, report.Unconfirmed);
    }

    /// <summary>The master of a stream a chat node sends on: one whose slot, then whose master, no earlier test faulted,
    /// if there is one (with three nodes on three streams, the three tests fault three masters).</summary>
    private async Task<(string Stream, int Slot, string Master, IReadOnlyList<string> Senders)> ChooseVictimAsync(AppRedisCluster redis)
    {
        var sendStreams = await app.SendStreamsAsync(FailoverTimeout);
        var candidates = new List<(string Stream, int Slot, string Master, IReadOnlyList<string> Senders)>();
        foreach (var stream in sendStreams.Values.Distinct().Order(StringComparer.Ordinal))
        {
            var slot = redis.SlotOf(stream);
            candidates.Add((stream, slot, await redis.MasterOfSlotAsync(slot), [.. sendStreams.Where(s => s.Value == stream).Select(s => s.Key).Order(StringComparer.Ordinal)]));
        }
        return candidates.OrderBy(c => app.FaultedSlots.Contains(c.Slot)).ThenBy(c => app.FaultedMasters.Contains(c.Master)).First();
    }

    [GeneratedRegex(@"^(?<resource>chatnode-\d+): .*Gap: (?<missing>\d+) entries from node")]
    private static partial Regex GapLine();
}
