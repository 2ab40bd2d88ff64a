using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>
/// Two nodes send numbered messages at a steady rate while redis-server suffers a real fault: to all clients, and every
/// third one to a single connection on the other node (a packet that travels in that node's inbox). Every client must
/// then hold every message meant for it that was sent without an exception exactly once, in per-sender order (direct
/// and broadcast messages together). Each test has a redis-server of its own, since the faults take it down.
/// </summary>
public sealed class DeliveryUnderFaultTests(ITestOutputHelper output)
{
    private const int MessagesPerSender = 400;
    private const int FaultAfter = 100;
    private static readonly TimeSpan SendInterval = TimeSpan.FromMilliseconds(10);

    [Fact]
    public async Task Nothing_is_lost_when_redis_restarts_with_its_data()
        => await RunAsync(persistent: true, "restart with AOF", async redis =>
        {
            await redis.StopAsync();
            await redis.RestartAsync();
        });

    [Fact]
    public async Task Nothing_is_lost_when_redis_is_killed_and_restarts_empty()
        => await RunAsync(persistent: false, "kill, restart empty", async redis =>
        {
            await redis.KillAsync();
            await redis.RestartAsync();
        });

    [Fact]
    public async Task Nothing_is_lost_when_redis_is_paused_for_seconds()
        => await RunAsync(persistent: false, "SIGSTOP 3 s", async redis =>
        {
            redis.Pause();
            // The fault itself is a 3 s freeze; this wait is its length, not a synchronisation.
            await Task.Delay(TimeSpan.FromSeconds(3));
            redis.Resume();
        });

    [Fact]
    public async Task Nothing_is_lost_when_every_client_connection_is_killed()
        => await RunAsync(persistent: false, "CLIENT KILL", async redis =>
        {
            await redis.ExecuteAsync("CLIENT", "KILL", "TYPE", "normal");
        });

    [Fact]
    public async Task A_send_that_cannot_reach_redis_in_time_fails_and_is_never_delivered()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var cluster = await TestCluster.StartAsync(redis, 2, HubProtocolKind.Json, output,
            o => o.PublishTimeout = TimeSpan.FromSeconds(1));
        await using var client = await cluster.ConnectAsync(1);
        // The sender's retries only: tests of other classes run at the same time in this process, some with outages.
        using var retries = new CounterTotal("signalr.redis_streams.publish_retries",
            cluster.Nodes[0].Services.GetRequiredService<Internal.BackplaneNode>().NodeId);
        await redis.KillAsync();

        // The first send is handed to Redis and retried; only then is the second sent, so it waits in the outbox.
        var first = cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "in flight");
        await Eventually.TrueAsync(() => retries.Total > 0, "the first send is being retried", TimeSpan.FromSeconds(20));
        var started = DateTime.UtcNow;
        var second = cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "too late");
        var ex = await Assert.ThrowsAsync<RedisStreamsPublishException>(() => Eventually.WithinAsync(second, "the send fails", TimeSpan.FromSeconds(20)));
        Assert.Contains("PublishTimeout", ex.Message, StringComparison.Ordinal);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(15), "failed after about PublishTimeout, not much later");

        await redis.RestartAsync();
        await Eventually.WithinAsync(first.ContinueWith(_ => { }, TaskScheduler.Default), "the in-flight send settles", TimeSpan.FromSeconds(30));
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "after");
        await client.WaitForTextAsync("after", TimeSpan.FromSeconds(30));
        Assert.DoesNotContain("too late", client.Texts);
        if (first.IsCompletedSuccessfully)
        {
            Assert.Contains("in flight", client.Texts);
        }
    }

    /// <summary>What a node appended to another node's inbox is republished there after Redis restarted empty, with the
    /// same sequence numbers, even when the node sends nothing more to that inbox. The other node is a ghost (known to
    /// the registry, reading nothing), so the entries are certainly unread when Redis loses them.</summary>
    [Fact]
    public async Task After_Redis_restarted_empty_a_node_republishes_what_it_had_appended_to_another_nodes_inbox()
    {
        await using var redis = await RedisServer.StartAsync(persistent: false);
        await using var cluster = await TestCluster.StartAsync(redis, 1, HubProtocolKind.Json, output);
        var sender = cluster.Nodes[0].Services.GetRequiredService<Internal.BackplaneNode>();
        var inbox = cluster.StreamKey + ":node:ghost";
        await redis.ExecuteAsync("HSET", cluster.StreamKey + ":connections", "ghost-connection", "ghost");
        for (var k = 1; k <= 3; k++)
        {
            await cluster.Hub(0).Clients.Client("ghost-connection").SendAsync(TestClient.SendMethod, $"direct-{k}");
        }
        Assert.Equal([1L, 2L, 3L], await SequencesInAsync(redis, inbox));

        await redis.KillAsync();
        await redis.RestartAsync();
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "after the restart"); // the node notices the new Redis

        await Eventually.TrueAsync(async () => (await SequencesInAsync(redis, inbox)).Count == 3, "the inbox is republished");
        Assert.Equal([1L, 2L, 3L], await SequencesInAsync(redis, inbox));
        Assert.Equal(sender.NodeId, (await PacketsInAsync(redis, inbox)).Select(p => p.Node).Distinct().Single());
    }

    /// <summary>The same when the other node went silent long enough to be judged gone (a node frozen past the heartbeat
    /// timeout, say, which may still be alive and read later): its inbox is republished too, and before anything new,
    /// so the entries keep their place in the merged order (ids lower than the next packet's on the shared stream). A
    /// node that skipped the inboxes of nodes it thought gone republished them only when it next wrote to them, after
    /// newer shared packets: their reader then got the older direct packets after the newer ones.</summary>
    [Fact]
    public async Task After_Redis_restarted_empty_a_node_republishes_the_inbox_of_a_node_it_judged_gone_before_anything_new()
    {
        await using var redis = await RedisServer.StartAsync(persistent: false);
        await using var cluster = await TestCluster.StartAsync(redis, 1, HubProtocolKind.Json, output);
        var sender = cluster.Nodes[0].Services.GetRequiredService<Internal.BackplaneNode>();
        var stream = cluster.StreamKey;
        var inbox = stream + ":node:ghost";
        await redis.ExecuteAsync("HSET", stream + ":connections", "ghost-connection", "ghost");
        // The ghost speaks once (a heartbeat on the shared stream), then never again.
        await using (var connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
        {
            await connection.GetDatabase().StreamAddAsync(
                stream, Internal.StreamEntryFormat.Encode(new Internal.StreamEntry { Kind = Internal.EntryKind.Heartbeat, Node = "ghost" }));
        }
        await Eventually.TrueAsync(() => sender.Membership.LiveNodes.Contains("ghost"), "the sender hears the ghost");
        for (var k = 1; k <= 3; k++)
        {
            await cluster.Hub(0).Clients.Client("ghost-connection").SendAsync(TestClient.SendMethod, $"direct-{k}");
        }
        Assert.Equal([1L, 2L, 3L], await SequencesInAsync(redis, inbox));
        await Eventually.TrueAsync(() => sender.Membership.IsGone("ghost"), "the sender judges the silent ghost gone");

        await redis.KillAsync();
        await redis.RestartAsync();
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "after the restart");

        await Eventually.TrueAsync(async () => (await SequencesInAsync(redis, inbox)).Count == 3, "the gone node's inbox is republished");
        Assert.Equal([1L, 2L, 3L], await SequencesInAsync(redis, inbox));
        await using var reader = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var lastInboxId = Internal.StreamId.Parse((await reader.GetDatabase().StreamRangeAsync(inbox))[^1].Id!);
        var shared = await reader.GetDatabase().StreamRangeAsync(stream);
        var afterRestart = shared.Last(e => PacketsOf(e).Any(p => p.Kind == Internal.EntryKind.All));
        Assert.True(lastInboxId.CompareTo(Internal.StreamId.Parse(afterRestart.Id!)) < 0,
            $"the republished inbox (last id {lastInboxId}) comes before the broadcast sent after the restart ({afterRestart.Id})");
    }

    /// <summary>A node that was reading when a sender appended reports what Redis lost of it for good (older than the
    /// sender's replay window) as a gap, even when it never read a packet of that sender: the sender's numbering restarts
    /// without a gap only for nodes positioned since. Node B is frozen (its Redis hop drops every reply) before node A
    /// starts and sends five messages; Redis restarts empty; A keeps only its last append (ReplayWindow zero), so it
    /// republishes that one and jumps over the four before it; B, thawed, must count those four as missing.</summary>
    [Fact]
    public async Task A_node_that_read_through_an_empty_restart_reports_what_a_sender_lost_beyond_its_window_as_a_gap()
    {
        await using var redis = await RedisServer.StartAsync(persistent: false);
        await using var hop = CuttableProxy.Start($"http://127.0.0.1:{redis.Port}");
        await using var cluster = await TestCluster.StartAsync(
            redis, 1, HubProtocolKind.Json, output, connectionString: $"127.0.0.1:{hop.Port},abortConnect=false");
        var b = cluster.Nodes[0].Services.GetRequiredService<Internal.BackplaneNode>();
        using var gaps = new CounterTotal("signalr.redis_streams.gap_entries", b.NodeId);
        await using var client = await cluster.ConnectAsync(0);

        hop.Freeze();
        await using var a = await TestNode.StartAsync(1, redis.ConnectionString, o =>
        {
            TestCluster.ApplyTestDefaults(o, TestCluster.NewIsolationId());
            o.StreamName = cluster.StreamName;
            o.KeyPrefix = cluster.KeyPrefix;
            o.ReplayWindow = TimeSpan.Zero;
        }, output);
        for (var k = 1; k <= 5; k++)
        {
            await a.HubContext.Clients.All.SendAsync(TestClient.SendMethod, $"a-{k}");
        }

        await redis.KillAsync();
        await redis.RestartAsync();
        await a.HubContext.Clients.All.SendAsync(TestClient.SendMethod, "a-6");
        hop.Thaw();
        hop.Cut();

        await Eventually.TrueAsync(() => client.Texts.Contains("a-6"), "B's client gets what A sent after the restart", TimeSpan.FromSeconds(30));
        Assert.Equal(["a-5", "a-6"], client.Texts.Where(t => t.StartsWith("a-", StringComparison.Ordinal)).ToArray());
        Assert.True(gaps.Total >= 4, $"B reports A's four lost messages as a gap (counted {gaps.Total})");
    }

    private static List<Internal.StreamEntry> PacketsOf(StackExchange.Redis.StreamEntry entry)
    {
        var split = new List<ReadOnlyMemory<byte>>();
        Internal.StreamEntryFormat.SplitPackets((byte[])entry["e"]!, split);
        return [.. split.Select(p => Internal.StreamEntryFormat.DecodePacket(p, strings: null))];
    }

    private static async Task<List<long>> SequencesInAsync(RedisServer redis, string stream)
        => [.. (await PacketsInAsync(redis, stream)).Select(p => p.Sequence)];

    private static async Task<List<Internal.StreamEntry>> PacketsInAsync(RedisServer redis, string stream)
    {
        await using var connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var packets = new List<Internal.StreamEntry>();
        var split = new List<ReadOnlyMemory<byte>>();
        foreach (var entry in await connection.GetDatabase().StreamRangeAsync(stream))
        {
            Internal.StreamEntryFormat.SplitPackets((byte[])entry["e"]!, split);
            packets.AddRange(split.Select(p => Internal.StreamEntryFormat.DecodePacket(p, strings: null)));
        }
        return packets;
    }

    private async Task RunAsync(bool persistent, string fault, Func<RedisServer, Task> inject)
    {
        await using var redis = await RedisServer.StartAsync(persistent);
        await using var cluster = await TestCluster.StartAsync(redis, 2, HubProtocolKind.MessagePack, output);
        var clients = new[] { await cluster.ConnectAsync(0), await cluster.ConnectAsync(1), await cluster.ConnectAsync(1) };

        // Node 0's sender writes directly to clients[1] (on node 1), node 1's to clients[0] (on node 0).
        var senders = new[] { new Sender(cluster.Hub(0), "n0", clients[1]), new Sender(cluster.Hub(1), "n1", clients[0]) };
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var sending = senders.Select(s => s.RunAsync(MessagesPerSender, SendInterval, stop.Token)).ToArray();

        await Eventually.TrueAsync(() => senders.All(s => s.Issued >= FaultAfter), "senders under way");
        await inject(redis);
        await Task.WhenAll(sending);

        var report = await DeliveryReport.SettleAsync(senders, clients, TimeSpan.FromSeconds(45));
        output.WriteLine($"{fault}: {report}");
        Assert.True(report.Sent > MessagesPerSender, $"most sends succeeded ({report})");
        Assert.Equal(0, report.Lost);
        Assert.Equal(0, report.Duplicates);
        Assert.Equal(0, report.Reordered);
        Assert.Equal(0, report.Unexpected);
        Assert.True(report.ExpectedDirect > 0, $"direct messages were sent ({report})");
    }

    /// <summary>Sends "{name}-{k}" for k = 1..count, one every interval: to all, and when k is a multiple of 3 to
    /// <paramref name="direct"/>'s connection only; without waiting for each to be confirmed (so several are in the
    /// outbox during a fault), and records which sends succeeded.</summary>
    internal sealed class Sender(IHubContext<TestHub> hub, string name, TestClient direct)
    {
        public static bool IsDirect(int number) => number % 3 == 0;

        public TestClient Direct { get; } = direct;

        /// <summary>Whether message <paramref name="number"/> is meant for <paramref name="client"/>.</summary>
        public bool IsFor(TestClient client, int number) => !IsDirect(number) || client == Direct;

        private readonly List<Task> _sends = [];
        private int _issued;

        public string Name { get; } = name;

        public int Issued => Volatile.Read(ref _issued);

        public HashSet<int> Succeeded { get; } = [];

        public int Failed { get; private set; }

        public async Task RunAsync(int count, TimeSpan interval, CancellationToken cancellationToken)
        {
            using var timer = new PeriodicTimer(interval);
            for (var k = 1; k <= count && !cancellationToken.IsCancellationRequested; k++)
            {
                var number = k;
                var text = $"{Name}-{number}";
                var send = IsDirect(number)
                    ? hub.Clients.Client(Direct.ConnectionId).SendAsync(TestClient.SendMethod, text, CancellationToken.None)
                    : hub.Clients.All.SendAsync(TestClient.SendMethod, text, CancellationToken.None);
                _sends.Add(Track(number, send));
                Interlocked.Increment(ref _issued);
                await timer.WaitForNextTickAsync(cancellationToken);
            }
            await Task.WhenAll(_sends);
        }

        /// <summary>The longest time one successful send took (from the call to Redis confirming it).</summary>
        public TimeSpan LongestSend { get; private set; }

        private async Task Track(int number, Task send)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                await send;
                var took = System.Diagnostics.Stopwatch.GetElapsedTime(started);
                lock (Succeeded)
                {
                    Succeeded.Add(number);
                    LongestSend = took > LongestSend ? took : LongestSend;
                }
            }
            catch (RedisStreamsPublishException)
            {
                lock (Succeeded)
                {
                    Failed++;
                }
            }
        }
    }

    internal sealed record DeliveryReport(int Sent, int Failed, int Received, int Lost, int Duplicates, int Reordered, int Unexpected, int ExpectedDirect)
    {
        /// <summary>Waits until every client has every successfully sent message meant for it (or the deadline passes),
        /// then counts.</summary>
        public static async Task<DeliveryReport> SettleAsync(IReadOnlyList<Sender> senders, IReadOnlyList<TestClient> clients, TimeSpan deadline)
        {
            int ExpectedFor(TestClient client) => senders.Sum(s => s.Succeeded.Count(n => s.IsFor(client, n)));
            try
            {
                await Eventually.TrueAsync(() => clients.All(c => c.Texts.Distinct().Count(t => IsFrom(senders, t)) >= ExpectedFor(c)),
                    "every client has every sent message meant for it", deadline);
            }
            catch (TimeoutException)
            {
                // counted below as lost
            }

            int received = 0, lost = 0, duplicates = 0, reordered = 0, unexpected = 0;
            foreach (var client in clients)
            {
                var texts = client.Texts;
                received += texts.Count;
                duplicates += texts.Count - texts.Distinct().Count();
                foreach (var sender in senders)
                {
                    var numbers = texts.Where(t => t.StartsWith(sender.Name + "-", StringComparison.Ordinal))
                        .Select(t => int.Parse(t[(sender.Name.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToList();
                    lost += sender.Succeeded.Count(n => sender.IsFor(client, n) && !numbers.Contains(n));
                    unexpected += numbers.Count(n => !sender.Succeeded.Contains(n) || !sender.IsFor(client, n));
                    for (var i = 1; i < numbers.Count; i++)
                    {
                        if (numbers[i] < numbers[i - 1])
                        {
                            reordered++;
                        }
                    }
                }
            }
            var sent = senders.Sum(s => s.Succeeded.Count);
            var expectedDirect = senders.Sum(s => s.Succeeded.Count(Sender.IsDirect));
            return new DeliveryReport(sent, senders.Sum(s => s.Failed), received, lost, duplicates, reordered, unexpected, expectedDirect);
        }

        private static bool IsFrom(IReadOnlyList<Sender> senders, string text) => senders.Any(s => text.StartsWith(s.Name + "-", StringComparison.Ordinal));

        public override string ToString()
            => $"sent {Sent} (direct {ExpectedDirect}), failed to send {Failed}, received {Received}, lost {Lost}, duplicates {Duplicates}, " +
               $"reordered {Reordered}, unexpected {Unexpected}";
    }
}
