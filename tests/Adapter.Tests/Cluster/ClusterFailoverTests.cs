using System.Diagnostics;
using SignalR.RedisStreams.Tests.Backplane;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Cluster;

/// <summary>
/// A master failover on a real Redis Cluster (3 masters, 3 replicas, <c>cluster-node-timeout</c> 1 s) with
/// <c>StreamCount</c> 3, under steady traffic. Three nodes each send on their own stream; nodes 0 and 1 send numbered
/// messages to all, and every third one to a connection on another node (its inbox). The master of node 0's stream
/// (which also holds the connection registry) suffers the fault: SIGKILL (its replica is promoted; writes it had not
/// replicated yet are lost and must be republished from node 0's replay window), a manual <c>CLUSTER FAILOVER</c>, or
/// SIGSTOP for longer than the node timeout (its replica is promoted, the old master comes back as a replica).
/// Counted like <see cref="DeliveryUnderFaultTests"/>: 0 lost, 0 duplicates, 0 reordered, and 0 gaps reported (nothing
/// was missed, so a reported gap would be false). Each test has a cluster of its own, since the fault changes it.
/// </summary>
public sealed class ClusterFailoverTests(ITestOutputHelper output)
{
    private const int MessagesPerSender = 400;
    private const int FaultAfter = 100;
    private static readonly TimeSpan SendInterval = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan FailoverTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Nothing_is_lost_when_the_master_of_a_senders_stream_is_killed_and_its_replica_promoted()
        => await RunAsync("cluster: SIGKILL master", allowedReordered: 0, async (redis, slot) =>
        {
            var master = await redis.MasterOfSlotAsync(slot);
            await master.KillAsync();
            await redis.WaitForNewMasterAsync(slot, master, FailoverTimeout);
        }, slotMoveSeen: true);

    [Fact]
    public async Task Nothing_is_lost_in_a_manual_failover_of_a_senders_stream()
        => await RunAsync("cluster: CLUSTER FAILOVER", allowedReordered: 0, async (redis, slot) =>
        {
            var master = await redis.MasterOfSlotAsync(slot);
            await RedisCluster.FailoverAsync(await redis.ReplicaOfAsync(master));
            await redis.WaitForNewMasterAsync(slot, master, FailoverTimeout);
        });

    /// <summary>Known open issue (README, "Redis Cluster"): a frozen master that wakes up after its replica took over
    /// still runs the commands queued on its sockets before it learns it was demoted, and in some runs one
    /// direct message of the faulted sender reached its connection after a broadcast sent after it. Nothing is lost or
    /// duplicated; the test allows that one reordered message and fails on a second.</summary>
    [Fact]
    public async Task Nothing_is_lost_when_the_master_of_a_senders_stream_is_paused_until_its_replica_takes_over()
        => await RunAsync("cluster: SIGSTOP master", allowedReordered: 1, async (redis, slot) =>
        {
            var master = await redis.MasterOfSlotAsync(slot);
            master.Pause();
            try
            {
                await redis.WaitForNewMasterAsync(slot, master, FailoverTimeout);
            }
            finally
            {
                master.Resume();
            }
            await redis.WaitUntilHealthyAsync(FailoverTimeout);
        });

    /// <param name="slotMoveSeen">The sender's node must find its stream's slot moved (without the watch's owner lookup
    /// it never does: with the owner dead, the client names any connected server as the slot's).</param>
    private async Task RunAsync(string fault, int allowedReordered, Func<RedisCluster, int, Task> inject, bool slotMoveSeen = false)
    {
        await using var redis = await RedisCluster.StartAsync();
        await using var cluster = await ClusterNodes.StartAsync(redis, 3, HubProtocolKind.MessagePack, output);
        var clients = new[] { await cluster.ConnectAsync(0), await cluster.ConnectAsync(1), await cluster.ConnectAsync(2) };
        var nodeIds = cluster.Nodes.Select((_, i) => cluster.Backplane(i).NodeId).ToList();
        using var gaps = new NodeCounter("signalr.redis_streams.gap_entries", nodeIds);

        // Node 0 (whose stream's master fails) writes directly to a client on node 2, node 1 to one on node 0.
        var senders = new[]
        {
            new DeliveryUnderFaultTests.Sender(cluster.Hub(0), "n0", clients[2]),
            new DeliveryUnderFaultTests.Sender(cluster.Hub(1), "n1", clients[0]),
        };
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var sending = senders.Select(s => s.RunAsync(MessagesPerSender, SendInterval, stop.Token)).ToArray();

        await Eventually.TrueAsync(() => senders.All(s => s.Issued >= FaultAfter), "senders under way");
        var clock = Stopwatch.StartNew();
        await inject(redis, cluster.SendSlot(0));
        var failedOver = clock.Elapsed;
        await Task.WhenAll(sending);

        var report = await DeliveryUnderFaultTests.DeliveryReport.SettleAsync(senders, clients, TimeSpan.FromSeconds(45));
        var line = $"{report}, gaps reported {gaps.Total}; new master after {failedOver.TotalMilliseconds:0} ms, longest send " +
                   $"{senders.Max(s => s.LongestSend).TotalMilliseconds:0} ms";
        output.WriteLine($"{fault}: {line}");
        foreach (var client in clients)
        {
            foreach (var sender in senders)
            {
                var numbers = client.Texts.Where(t => t.StartsWith(sender.Name + "-", StringComparison.Ordinal))
                    .Select(t => int.Parse(t[(sender.Name.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToList();
                for (var i = 1; i < numbers.Count; i++)
                {
                    if (numbers[i] < numbers[i - 1])
                    {
                        output.WriteLine($"out of order at {client} from {sender.Name}: {string.Join(' ', numbers.Skip(Math.Max(0, i - 8)).Take(16))}");
                        output.WriteLine($"nodes: {string.Join(", ", nodeIds.Select((n, k) => k + "=" + n))}");
                    }
                }
            }
        }
        ClusterChaosReport.Write(fault, line);
        Assert.True(report.Sent > MessagesPerSender, $"most sends succeeded ({report})");
        Assert.Equal(0, report.Lost);
        Assert.Equal(0, report.Duplicates);
        Assert.InRange(report.Reordered, 0, allowedReordered);
        Assert.Equal(0, report.Unexpected);
        Assert.Equal(0, gaps.Total);
        Assert.True(report.ExpectedDirect > 0, $"direct messages were sent ({report})");
        if (slotMoveSeen)
        {
            // Usually found before the sends settle; under load a topology reload can take seconds (the client waits on
            // the dead master's connection), and the move is found after the client's own timeout moved the sends on.
            await Eventually.TrueAsync(() => cluster.Backplane(0).SlotMoves > 0, "node 0 to find its stream's slot moved to the new master");
        }
    }
}
