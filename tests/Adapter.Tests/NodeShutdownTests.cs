using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests;

/// <summary>A node shut down cleanly leaves a working cluster behind: the survivors keep delivering, and whatever
/// depended on the departed node's connections fails the documented way instead of hanging.</summary>
public sealed class NodeShutdownTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private Task<TestCluster> StartClusterAsync(HubProtocolKind protocol) => TestCluster.StartAsync(redis.Server, 3, protocol, output);

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task A_node_shut_down_cleanly_leaves_the_others_delivering_to_their_clients(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var departing = await cluster.ConnectAsync(0, user: "alice");
        var b = await cluster.ConnectAsync(1, user: "alice");
        var c = await cluster.ConnectAsync(2, user: "bob");
        await cluster.Hub(1).Groups.AddToGroupAsync(b.ConnectionId, "room");
        await cluster.Hub(1).Groups.AddToGroupAsync(c.ConnectionId, "room");
        await cluster.Hub(1).Groups.AddToGroupAsync(departing.ConnectionId, "room");

        await cluster.StopNodeAsync(0);
        await Eventually.WithinAsync(departing.Closed, "the departing node's client to be disconnected");

        await cluster.Hub(1).Clients.All.SendAsync(TestClient.SendMethod, "all");
        await cluster.Hub(2).Clients.Group("room").SendAsync(TestClient.SendMethod, "room");
        await cluster.Hub(2).Clients.User("alice").SendAsync(TestClient.SendMethod, "alice");
        await cluster.Hub(1).Clients.Client(c.ConnectionId).SendAsync(TestClient.SendMethod, "direct");
        await cluster.Hub(2).Clients.Client(departing.ConnectionId).SendAsync(TestClient.SendMethod, "to the departed");

        await cluster.FlushAsync(b, c);
        Assert.Equal(["alice", "all", "room"], b.Texts.Order(StringComparer.Ordinal));
        Assert.Equal(["all", "direct", "room"], c.Texts.Order(StringComparer.Ordinal));
        Assert.Empty(departing.Texts);

        // Acknowledged group changes and client results between the survivors still work.
        await Eventually.WithinAsync(cluster.Hub(2).Groups.RemoveFromGroupAsync(b.ConnectionId, "room"), "RemoveFromGroupAsync after the shutdown");
        Assert.Equal(4, await Eventually.WithinAsync(
            cluster.Hub(2).Clients.Client(b.ConnectionId).InvokeAsync<int>(TestClient.GetNumberMethod, "four", CancellationToken.None),
            "a client result after the shutdown"));
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_on_a_connection_whose_node_shuts_down_fails_with_connection_disconnected(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var target = await cluster.ConnectAsync(1);
        using var held = target.HoldGetNumber();

        var invoke = cluster.Hub(0).Clients.Client(target.ConnectionId).InvokeAsync<int>(TestClient.GetNumberMethod, "x", CancellationToken.None);
        await Eventually.WithinAsync(held.Invoked, "the client to receive the invocation");

        await cluster.StopNodeAsync(1);

        var ex = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(invoke, "the pending invoke to fail"));
        Assert.Equal("Connection disconnected.", ex.Message);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Connections_of_a_node_shut_down_cleanly_no_longer_exist_for_the_cluster(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var departing = await cluster.ConnectAsync(0);
        var id = departing.ConnectionId;

        await cluster.StopNodeAsync(0);

        await ClientResults.EventuallyDoesNotExistAsync(cluster.Hub(1), id);
        await ClientResults.EventuallyDoesNotExistAsync(cluster.Hub(2), id);
    }

    [Fact]
    public async Task A_node_that_stops_appends_nothing_after_its_goodbye_and_the_others_forget_it_at_once()
    {
        // Heartbeats every 20 ms, so that one is due at about any moment, also while the node says goodbye; and a long
        // timeout, so that only the goodbye can make the others forget it within the test.
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output, o =>
        {
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(20);
            o.HeartbeatTimeout = TimeSpan.FromMinutes(1);
        });
        var leaving = cluster.Nodes[1].Services.GetRequiredService<BackplaneNode>().NodeId;
        var staying = cluster.Nodes[0].Services.GetRequiredService<BackplaneNode>();

        await cluster.StopNodeAsync(1);

        await Eventually.TrueAsync(() => !staying.Membership.LiveNodes.Contains(leaving), "node 0 forgets node 1");
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.Server.ConnectionString);
        var kinds = new List<EntryKind>();
        var packets = new List<ReadOnlyMemory<byte>>();
        foreach (var entry in await connection.GetDatabase().StreamRangeAsync(cluster.StreamKey))
        {
            var (value, _) = StreamEntryFormat.ReadFields([.. entry.Values.SelectMany(v => new[] { v.Name, v.Value })]);
            StreamEntryFormat.SplitPackets(value, packets);
            kinds.AddRange(packets.Select(p => StreamEntryFormat.DecodePacket(p, strings: null))
                .Where(packet => packet.Node == leaving).Select(packet => packet.Kind));
        }

        Assert.Contains(EntryKind.Heartbeat, kinds);
        Assert.Equal(EntryKind.Goodbye, kinds[^1]);
        Assert.Single(kinds, k => k == EntryKind.Goodbye);
        Assert.DoesNotContain(leaving, staying.Membership.LiveNodes);
    }
}
