using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests;

/// <summary>
/// Every way of addressing connections reaches the matching connections on every node exactly once, and no others
/// (the delivery cases of ASP.NET Core's <c>ScaleoutHubLifetimeManagerTests</c>, on three real servers).
/// Group memberships here are made on the member's own node; cross-node membership changes are in
/// <see cref="CrossNodeGroupTests"/>.
/// </summary>
public sealed class CrossNodeDeliveryTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private Task<TestCluster> StartClusterAsync(HubProtocolKind protocol, int nodes = 3) => TestCluster.StartAsync(redis.Server, nodes, protocol, output);

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_all_reaches_clients_on_every_node_exactly_once(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(1);
        var c = await cluster.ConnectAsync(2);

        await cluster.Hub(1).Clients.All.SendAsync(TestClient.SendMethod, "hello all");

        await cluster.FlushAsync(a, b, c);
        Assert.Equal(["hello all"], a.Texts);
        Assert.Equal(["hello all"], b.Texts);
        Assert.Equal(["hello all"], c.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_all_except_skips_the_excluded_connections_on_every_node(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var excludedLocal = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(1);
        var excludedRemote = await cluster.ConnectAsync(2);
        var c = await cluster.ConnectAsync(2);

        await cluster.Hub(0).Clients.AllExcept([excludedLocal.ConnectionId, excludedRemote.ConnectionId])
            .SendAsync(TestClient.SendMethod, "not for the excluded");

        await cluster.FlushAsync(a, excludedLocal, b, excludedRemote, c);
        Assert.Equal(["not for the excluded"], a.Texts);
        Assert.Equal(["not for the excluded"], b.Texts);
        Assert.Equal(["not for the excluded"], c.Texts);
        Assert.Empty(excludedLocal.Texts);
        Assert.Empty(excludedRemote.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_a_connection_on_another_node_reaches_only_that_connection(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var target = await cluster.ConnectAsync(0);
        var neighbour = await cluster.ConnectAsync(0);
        var other = await cluster.ConnectAsync(2);

        await cluster.Hub(1).Clients.Client(target.ConnectionId).SendAsync(TestClient.SendMethod, "direct");

        await cluster.FlushAsync(target, neighbour, other);
        Assert.Equal(["direct"], target.Texts);
        Assert.Empty(neighbour.Texts);
        Assert.Empty(other.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_a_connection_on_the_sending_node_is_delivered_exactly_once(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var target = await cluster.ConnectAsync(0);

        await cluster.Hub(0).Clients.Client(target.ConnectionId).SendAsync(TestClient.SendMethod, "local");
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "local all");

        // The flush makes every node put a sentinel in the stream after anything node 0 published, so a copy of
        // "local" coming back through the backplane would arrive before the flush completes.
        await cluster.FlushAsync(target);
        Assert.Equal(["local", "local all"], target.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_connections_spread_over_nodes_reaches_each_of_them_once(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(1);
        var c = await cluster.ConnectAsync(2);
        var left = await cluster.ConnectAsync(1);

        await cluster.Hub(1).Clients.Clients([a.ConnectionId, b.ConnectionId, c.ConnectionId]).SendAsync(TestClient.SendMethod, "chosen");

        await cluster.FlushAsync(a, b, c, left);
        Assert.Equal(["chosen"], a.Texts);
        Assert.Equal(["chosen"], b.Texts);
        Assert.Equal(["chosen"], c.Texts);
        Assert.Empty(left.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Group_send_reaches_members_on_every_node(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(1);
        var c = await cluster.ConnectAsync(2);
        var outsider = await cluster.ConnectAsync(1);
        await cluster.Hub(0).Groups.AddToGroupAsync(a.ConnectionId, "room");
        await cluster.Hub(1).Groups.AddToGroupAsync(b.ConnectionId, "room");
        await cluster.Hub(2).Groups.AddToGroupAsync(c.ConnectionId, "room");

        await cluster.Hub(1).Clients.Group("room").SendAsync(TestClient.SendMethod, "to room");

        await cluster.FlushAsync(a, b, c, outsider);
        Assert.Equal(["to room"], a.Texts);
        Assert.Equal(["to room"], b.Texts);
        Assert.Equal(["to room"], c.Texts);
        Assert.Empty(outsider.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Group_send_from_a_node_without_members_reaches_the_members(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        await cluster.Hub(0).Groups.AddToGroupAsync(a.ConnectionId, "room");

        await cluster.Hub(2).Clients.Group("room").SendAsync(TestClient.SendMethod, "from afar");

        await cluster.FlushAsync(a);
        Assert.Equal(["from afar"], a.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_groups_reaches_the_members_of_each_group_on_every_node(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var red = await cluster.ConnectAsync(0);
        var blue = await cluster.ConnectAsync(1);
        var green = await cluster.ConnectAsync(2);
        await cluster.Hub(0).Groups.AddToGroupAsync(red.ConnectionId, "red");
        await cluster.Hub(1).Groups.AddToGroupAsync(blue.ConnectionId, "blue");
        await cluster.Hub(2).Groups.AddToGroupAsync(green.ConnectionId, "green");

        await cluster.Hub(2).Clients.Groups(["red", "blue"]).SendAsync(TestClient.SendMethod, "red and blue");

        await cluster.FlushAsync(red, blue, green);
        Assert.Equal(["red and blue"], red.Texts);
        Assert.Equal(["red and blue"], blue.Texts);
        Assert.Empty(green.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Group_except_skips_the_excluded_members_on_every_node(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var excluded = await cluster.ConnectAsync(1);
        var c = await cluster.ConnectAsync(2);
        var excludedToo = await cluster.ConnectAsync(2);
        foreach (var client in new[] { a, excluded, c, excludedToo })
        {
            await cluster.Hub(client.Node).Groups.AddToGroupAsync(client.ConnectionId, "room");
        }

        await cluster.Hub(0).Clients.GroupExcept("room", [excluded.ConnectionId, excludedToo.ConnectionId])
            .SendAsync(TestClient.SendMethod, "room minus two");

        await cluster.FlushAsync(a, excluded, c, excludedToo);
        Assert.Equal(["room minus two"], a.Texts);
        Assert.Equal(["room minus two"], c.Texts);
        Assert.Empty(excluded.Texts);
        Assert.Empty(excludedToo.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_user_reaches_all_of_their_connections_on_every_node(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var alice0 = await cluster.ConnectAsync(0, user: "alice");
        var alice2 = await cluster.ConnectAsync(2, user: "alice");
        var alice2Again = await cluster.ConnectAsync(2, user: "alice");
        var bob = await cluster.ConnectAsync(1, user: "bob");

        await cluster.Hub(1).Clients.User("alice").SendAsync(TestClient.SendMethod, "for alice");

        await cluster.FlushAsync(alice0, alice2, alice2Again, bob);
        Assert.Equal(["for alice"], alice0.Texts);
        Assert.Equal(["for alice"], alice2.Texts);
        Assert.Equal(["for alice"], alice2Again.Texts);
        Assert.Empty(bob.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_users_reaches_each_listed_user_on_every_node(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var alice = await cluster.ConnectAsync(0, user: "alice");
        var bob = await cluster.ConnectAsync(1, user: "bob");
        var bobElsewhere = await cluster.ConnectAsync(2, user: "bob");
        var carol = await cluster.ConnectAsync(2, user: "carol");

        await cluster.Hub(2).Clients.Users(["alice", "bob"]).SendAsync(TestClient.SendMethod, "alice and bob");

        await cluster.FlushAsync(alice, bob, bobElsewhere, carol);
        Assert.Equal(["alice and bob"], alice.Texts);
        Assert.Equal(["alice and bob"], bob.Texts);
        Assert.Equal(["alice and bob"], bobElsewhere.Texts);
        Assert.Empty(carol.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_user_still_reaches_their_other_connections_after_one_disconnects(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var leaving = await cluster.ConnectAsync(0, user: "alice");
        var staying = await cluster.ConnectAsync(2, user: "alice");
        await cluster.Hub(1).Clients.User("alice").SendAsync(TestClient.SendMethod, "before");
        await leaving.WaitForTextAsync("before");
        await staying.WaitForTextAsync("before");

        await leaving.StopAsync();
        await cluster.Hub(1).Clients.User("alice").SendAsync(TestClient.SendMethod, "after");

        await cluster.FlushAsync(staying);
        Assert.Equal(["before", "after"], staying.Texts);
        Assert.Equal(["before"], leaving.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Hub_method_group_send_reaches_members_on_every_node(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var sender = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(1);
        var c = await cluster.ConnectAsync(2);
        await b.Connection.InvokeAsync(nameof(TestHub.JoinGroup), "room");
        await c.Connection.InvokeAsync(nameof(TestHub.JoinGroup), "room");

        await sender.Connection.InvokeAsync(nameof(TestHub.SendToGroup), "room", "from a hub method");

        await cluster.FlushAsync(sender, b, c);
        Assert.Equal(["from a hub method"], b.Texts);
        Assert.Equal(["from a hub method"], c.Texts);
        Assert.Empty(sender.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Messages_from_one_node_to_a_connection_on_another_arrive_in_send_order(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol, nodes: 2);
        var target = await cluster.ConnectAsync(0);
        await cluster.Hub(0).Groups.AddToGroupAsync(target.ConnectionId, "room");
        var expected = new List<string>();

        for (var i = 0; i < 30; i++)
        {
            var text = $"m{i}";
            expected.Add(text);
            var clients = cluster.Hub(1).Clients;
            var send = (i % 3) switch
            {
                0 => clients.Client(target.ConnectionId).SendAsync(TestClient.SendMethod, text),
                1 => clients.Group("room").SendAsync(TestClient.SendMethod, text),
                _ => clients.All.SendAsync(TestClient.SendMethod, text),
            };
            await send;
        }

        await cluster.FlushAsync(target);
        Assert.Equal(expected, target.Texts);
    }

    /// <summary>Direct sends go to the target node's inbox, sends to all and to groups to the shared stream; the node
    /// merges its two streams by entry id. A burst (not awaited one by one), read 7 entries at a time so that reads
    /// come back full and the merge must hold back the other stream's later entries, still arrives in send order.</summary>
    [Fact]
    public async Task A_burst_of_direct_group_and_all_sends_from_one_node_arrives_in_send_order_across_the_two_streams()
    {
        const int Count = 600;
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.MessagePack, output, o => o.ReadCount = 7);
        var target = await cluster.ConnectAsync(0);
        await cluster.Hub(1).Groups.AddToGroupAsync(target.ConnectionId, "room");
        var clients = cluster.Hub(1).Clients;
        var expected = Enumerable.Range(0, Count).Select(i => $"m{i}").ToList();

        var sends = expected.Select((text, i) => (i % 3) switch
        {
            0 => clients.Client(target.ConnectionId).SendAsync(TestClient.SendMethod, text),
            1 => clients.Group("room").SendAsync(TestClient.SendMethod, text),
            _ => clients.All.SendAsync(TestClient.SendMethod, text),
        }).ToList();
        await Task.WhenAll(sends);

        await cluster.FlushAsync(target);
        Assert.Equal(expected, target.Texts);
    }

    [Fact]
    public async Task Json_and_MessagePack_clients_on_different_nodes_each_get_correctly_encoded_messages()
    {
        await using var cluster = await StartClusterAsync(HubProtocolKind.Json);
        var json = await cluster.ConnectAsync(0, protocol: HubProtocolKind.Json);
        var messagePack = await cluster.ConnectAsync(1, protocol: HubProtocolKind.MessagePack);
        var jsonElsewhere = await cluster.ConnectAsync(1, protocol: HubProtocolKind.Json);
        var messagePackElsewhere = await cluster.ConnectAsync(0, protocol: HubProtocolKind.MessagePack);
        var everyone = new[] { json, messagePack, jsonElsewhere, messagePackElsewhere };
        foreach (var client in everyone)
        {
            await cluster.Hub(client.Node).Groups.AddToGroupAsync(client.ConnectionId, "mixed");
        }

        const string Text = "héllo wörld ✓ 你好 \"quoted\" \\ 🎉";
        await cluster.Hub(2).Clients.Group("mixed").SendAsync(TestClient.RichMethod, Text, 42, 3.25);
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.RichMethod, "all from 0", -7, -0.5);
        await cluster.Hub(1).Clients.Group("mixed").SendAsync(TestClient.RichMethod, "group from 1", int.MaxValue, 1e300);

        // Messages from different nodes may interleave; each must arrive once, intact, in the client's own encoding.
        await cluster.FlushAsync(everyone);
        ReceivedMessage[] expected =
        [
            new(TestClient.RichMethod, Text, 42, 3.25),
            new(TestClient.RichMethod, "all from 0", -7, -0.5),
            new(TestClient.RichMethod, "group from 1", int.MaxValue, 1e300),
        ];
        foreach (var client in everyone)
        {
            var rich = client.Messages.Where(m => m.Method == TestClient.RichMethod).OrderBy(m => m.Text, StringComparer.Ordinal);
            Assert.Equal(expected.OrderBy(m => m.Text, StringComparer.Ordinal), rich);
        }
    }
}
