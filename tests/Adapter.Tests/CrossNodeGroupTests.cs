using Microsoft.AspNetCore.SignalR;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests;

/// <summary>
/// Group membership changed from a node that does not hold the connection (acknowledged: done when the call
/// returns), and what happens to memberships and sends when connections leave (the group cases of ASP.NET Core's
/// <c>ScaleoutHubLifetimeManagerTests</c>).
/// </summary>
public sealed class CrossNodeGroupTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private Task<TestCluster> StartClusterAsync(HubProtocolKind protocol, int nodes = 3) => TestCluster.StartAsync(redis.Server, nodes, protocol, output);

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Adding_a_connection_on_another_node_to_a_group_is_done_when_the_call_returns(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);

        await Eventually.WithinAsync(cluster.Hub(1).Groups.AddToGroupAsync(a.ConnectionId, "room"), "AddToGroupAsync from node 1");
        // Sent from a third node right away: the acknowledged add must already be in effect on node 0.
        await cluster.Hub(2).Clients.Group("room").SendAsync(TestClient.SendMethod, "welcome");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "welcome again");

        await cluster.FlushAsync(a);
        Assert.Equal(["welcome", "welcome again"], a.Texts.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Removing_a_connection_on_another_node_from_a_group_stops_group_sends_to_it(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var leaving = await cluster.ConnectAsync(0);
        var staying = await cluster.ConnectAsync(2);
        await cluster.Hub(0).Groups.AddToGroupAsync(leaving.ConnectionId, "room");
        await cluster.Hub(2).Groups.AddToGroupAsync(staying.ConnectionId, "room");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "before");
        await leaving.WaitForTextAsync("before");

        await Eventually.WithinAsync(cluster.Hub(1).Groups.RemoveFromGroupAsync(leaving.ConnectionId, "room"), "RemoveFromGroupAsync from node 1");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "after");
        await cluster.Hub(2).Clients.Group("room").SendAsync(TestClient.SendMethod, "after, from node 2");

        await cluster.FlushAsync(leaving, staying);
        Assert.Equal(["before"], leaving.Texts);
        Assert.Equal(["after", "after, from node 2", "before"], staying.Texts.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Adding_a_connection_already_in_the_group_from_another_node_still_delivers_once(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol, nodes: 2);
        var a = await cluster.ConnectAsync(0);
        await cluster.Hub(0).Groups.AddToGroupAsync(a.ConnectionId, "room");

        await Eventually.WithinAsync(cluster.Hub(1).Groups.AddToGroupAsync(a.ConnectionId, "room"), "AddToGroupAsync from node 1");
        await Eventually.WithinAsync(cluster.Hub(1).Groups.AddToGroupAsync(a.ConnectionId, "room"), "AddToGroupAsync from node 1 again");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "once");

        await cluster.FlushAsync(a);
        Assert.Equal(["once"], a.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Removing_a_connection_on_another_node_from_a_group_it_is_not_in_completes(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol, nodes: 2);
        var a = await cluster.ConnectAsync(0);

        await Eventually.WithinAsync(cluster.Hub(1).Groups.RemoveFromGroupAsync(a.ConnectionId, "never-joined"), "RemoveFromGroupAsync from node 1");

        await cluster.Hub(1).Clients.Group("never-joined").SendAsync(TestClient.SendMethod, "nobody");
        await cluster.FlushAsync(a);
        Assert.Empty(a.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Removing_then_adding_again_from_another_node_restores_delivery(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol, nodes: 2);
        var a = await cluster.ConnectAsync(0);

        await cluster.Hub(1).Groups.AddToGroupAsync(a.ConnectionId, "room");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "one");
        await cluster.Hub(1).Groups.RemoveFromGroupAsync(a.ConnectionId, "room");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "two");
        await cluster.Hub(1).Groups.AddToGroupAsync(a.ConnectionId, "room");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "three");

        await cluster.FlushAsync(a);
        Assert.Equal(["one", "three"], a.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Group_send_after_a_member_on_another_node_disconnects_reaches_the_remaining_members(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var leaving = await cluster.ConnectAsync(0);
        var staying = await cluster.ConnectAsync(2);
        await cluster.Hub(1).Groups.AddToGroupAsync(leaving.ConnectionId, "room");
        await cluster.Hub(1).Groups.AddToGroupAsync(staying.ConnectionId, "room");

        await leaving.StopAsync();
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "after");
        await cluster.Hub(0).Clients.Group("room").SendAsync(TestClient.SendMethod, "after, from its old node");

        await cluster.FlushAsync(staying);
        Assert.Equal(["after", "after, from its old node"], staying.Texts.Order(StringComparer.Ordinal));
        Assert.Empty(leaving.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task A_connection_that_disconnected_from_another_node_no_longer_exists_for_the_cluster(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol, nodes: 2);
        var leaving = await cluster.ConnectAsync(0);
        var id = leaving.ConnectionId;
        await cluster.Hub(1).Groups.AddToGroupAsync(id, "room");

        await leaving.StopAsync();

        // Sends to it are fire-and-forget and must not throw; client results must fail as for an unknown connection.
        await cluster.Hub(1).Clients.Client(id).SendAsync(TestClient.SendMethod, "into the void");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "empty room");
        await ClientResults.EventuallyDoesNotExistAsync(cluster.Hub(1), id);
        await ClientResults.EventuallyDoesNotExistAsync(cluster.Hub(0), id);
        Assert.Empty(leaving.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task A_reconnected_client_is_not_in_the_groups_of_its_previous_connection(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol, nodes: 2);
        var first = await cluster.ConnectAsync(0, user: "alice");
        await cluster.Hub(1).Groups.AddToGroupAsync(first.ConnectionId, "room");
        await first.StopAsync();

        var second = await cluster.ConnectAsync(0, user: "alice");
        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "room only");
        await cluster.Hub(1).Clients.User("alice").SendAsync(TestClient.SendMethod, "for alice");

        await cluster.FlushAsync(second);
        Assert.Equal(["for alice"], second.Texts);
    }
}
