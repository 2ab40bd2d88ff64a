using System.Globalization;
using Microsoft.AspNetCore.SignalR;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Cluster;

/// <summary>
/// The contract on a real Redis Cluster (3 masters, 3 replicas) with <c>StreamCount</c> 3, three nodes each sending on
/// its own stream: the keys of each stream share one slot and the streams sit on three masters; broadcast, direct,
/// group (a connection of another node added, acknowledged), user and client-result traffic crosses streams; each
/// sender's order to a connection holds.
/// </summary>
public sealed class ClusterContractTests(RedisClusterFixture redis, ITestOutputHelper output) : IClassFixture<RedisClusterFixture>
{
    [Fact]
    public async Task Each_streams_keys_share_one_slot_and_the_streams_sit_on_different_masters()
    {
        var shards = StreamShards.Keys("app:", "chat", 3);
        var masters = new HashSet<int>();
        foreach (var keys in shards)
        {
            var server = redis.Cluster.Servers[0];
            var slots = new HashSet<string>();
            foreach (var key in new[] { keys.StreamName, (string)keys.Epoch!, (string)keys.Clock!, (string)keys.Sequences!, (string)keys.Inbox("n1")!, (string)keys.InboxSequences("n1")!, (string)keys.Connections! })
            {
                var reply = await server.RawCommandAsync("CLUSTER", "KEYSLOT", key);
                slots.Add(reply.Trim().TrimStart(':'));
                Assert.Equal(StreamShards.SlotOfKey(key).ToString(CultureInfo.InvariantCulture), reply.Trim().TrimStart(':'));
            }
            Assert.Single(slots);
            masters.Add((await redis.Cluster.MasterOfSlotAsync(StreamShards.SlotOfKey(keys.StreamName))).Port);
        }
        Assert.Equal(3, masters.Count);
        Assert.NotEqual(StreamShards.SlotOfKey(new RedisStreamsKeys("app:", "chat").StreamName), StreamShards.SlotOfKey(new RedisStreamsKeys("other:", "chat").StreamName));
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Broadcasts_from_every_node_reach_every_client_over_three_streams(HubProtocolKind protocol)
    {
        await using var cluster = await ClusterNodes.StartAsync(redis.Cluster, 3, protocol, output);
        var clients = new[] { await cluster.ConnectAsync(0), await cluster.ConnectAsync(1), await cluster.ConnectAsync(2) };

        for (var node = 0; node < 3; node++)
        {
            await cluster.Hub(node).Clients.All.SendAsync(TestClient.SendMethod, $"from-{node}");
        }

        foreach (var client in clients)
        {
            for (var node = 0; node < 3; node++)
            {
                await client.WaitForTextAsync($"from-{node}");
            }
        }
        await cluster.FlushAsync(clients);
        Assert.All(clients, c => Assert.Equal(3, c.Texts.Count(t => t.StartsWith("from-", StringComparison.Ordinal))));
        Assert.Equal(3, Enumerable.Range(0, 3).Select(i => cluster.Backplane(i).SendShard).Distinct().Count());
        var lengths = await cluster.StreamLengthsAsync(redis.Cluster);
        Assert.True(lengths.All(l => l > 0), $"every stream carries entries ({ClusterNodes.Show(lengths)})");
    }

    [Fact]
    public async Task Direct_group_and_user_sends_cross_streams_and_keep_each_senders_order()
    {
        await using var cluster = await ClusterNodes.StartAsync(redis.Cluster, 3, HubProtocolKind.Json, output);
        var onNode1 = await cluster.ConnectAsync(1, user: "ann");
        var onNode2 = await cluster.ConnectAsync(2, user: "bob");

        // A connection of another node joins a group (acknowledged by that node, through the inboxes of two streams).
        await cluster.Hub(0).Groups.AddToGroupAsync(onNode1.ConnectionId, "room");
        await cluster.Hub(2).Groups.AddToGroupAsync(onNode2.ConnectionId, "room");

        const int Count = 60;
        for (var k = 1; k <= Count; k++)
        {
            var text = $"n0-{k}";
            _ = (k % 3) switch
            {
                0 => cluster.Hub(0).Clients.Client(onNode1.ConnectionId).SendAsync(TestClient.SendMethod, text),
                1 => cluster.Hub(0).Clients.Group("room").SendAsync(TestClient.SendMethod, text),
                _ => cluster.Hub(0).Clients.User("ann").SendAsync(TestClient.SendMethod, text),
            };
        }
        await cluster.Hub(0).Clients.User("bob").SendAsync(TestClient.SendMethod, "to bob");
        await onNode1.WaitForTextAsync($"n0-{Count}");
        await onNode2.WaitForTextAsync("to bob");
        await cluster.FlushAsync(onNode1, onNode2);

        var numbers = onNode1.Texts.Where(t => t.StartsWith("n0-", StringComparison.Ordinal)).Select(t => int.Parse(t[3..], CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(Enumerable.Range(1, Count), numbers);
        var groupOnly = onNode2.Texts.Where(t => t.StartsWith("n0-", StringComparison.Ordinal)).Select(t => int.Parse(t[3..], CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(Enumerable.Range(1, Count).Where(k => k % 3 == 1), groupOnly);

        await cluster.Hub(1).Groups.RemoveFromGroupAsync(onNode2.ConnectionId, "room");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "after leave");
        await onNode1.WaitForTextAsync("after leave");
        await cluster.FlushAsync(onNode1, onNode2);
        Assert.DoesNotContain("after leave", onNode2.Texts);
    }

    [Fact]
    public async Task A_client_result_crosses_from_one_stream_to_another_and_back()
    {
        await using var cluster = await ClusterNodes.StartAsync(redis.Cluster, 3, HubProtocolKind.MessagePack, output);
        var onNode2 = await cluster.ConnectAsync(2);

        var result = await Eventually.WithinAsync(
            cluster.Hub(0).Clients.Client(onNode2.ConnectionId).InvokeAsync<int>(TestClient.GetNumberMethod, "four", CancellationToken.None), "the client result");
        var missing = await Assert.ThrowsAsync<IOException>(() => Eventually.WithinAsync(
            cluster.Hub(1).Clients.Client("nobody").InvokeAsync<int>(TestClient.GetNumberMethod, "x", CancellationToken.None), "the invoke to fail"));

        Assert.Equal(4, result);
        Assert.Equal(ClientResults.DoesNotExistMessage("nobody"), missing.Message);
    }

    [Fact]
    public async Task A_node_that_stops_says_goodbye_to_the_nodes_reading_other_streams()
    {
        await using var cluster = await ClusterNodes.StartAsync(redis.Cluster, 3, HubProtocolKind.Json, output,
            o => o.HeartbeatTimeout = TimeSpan.FromMinutes(1)); // only the goodbye can make the others forget it in time
        Assert.Equal(3, cluster.Backplane(0).Membership.LiveCount);

        await cluster.StopNodeAsync(2);

        await Eventually.TrueAsync(() => cluster.Backplane(0).Membership.LiveCount == 2 && cluster.Backplane(1).Membership.LiveCount == 2,
            "nodes 0 and 1 forget node 2", TimeSpan.FromSeconds(20));
    }
}
