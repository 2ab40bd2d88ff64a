using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests;

/// <summary>
/// The lifetime-manager contract on one node that uses the backplane (the cases of ASP.NET Core's
/// <c>HubLifetimeManagerTestsBase</c>): with the backplane in place, a lone server must still behave exactly like
/// SignalR's default manager — every message once, client results, the same errors.
/// </summary>
public sealed class SingleNodeContractTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private Task<TestCluster> StartNodeAsync(HubProtocolKind protocol) => TestCluster.StartAsync(redis.Server, 1, protocol, output);

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_all_reaches_every_client_exactly_once(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(0);

        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "hello all");

        await cluster.FlushAsync(a, b);
        Assert.Equal(["hello all"], a.Texts);
        Assert.Equal(["hello all"], b.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_a_connection_reaches_only_that_connection_exactly_once(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(0);

        await cluster.Hub(0).Clients.Client(a.ConnectionId).SendAsync(TestClient.SendMethod, "for a");

        await cluster.FlushAsync(a, b);
        Assert.Equal(["for a"], a.Texts);
        Assert.Empty(b.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Group_send_reaches_members_and_not_others(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var member = await cluster.ConnectAsync(0);
        var outsider = await cluster.ConnectAsync(0);
        await cluster.Hub(0).Groups.AddToGroupAsync(member.ConnectionId, "room");

        await cluster.Hub(0).Clients.Group("room").SendAsync(TestClient.SendMethod, "to room");

        await cluster.FlushAsync(member, outsider);
        Assert.Equal(["to room"], member.Texts);
        Assert.Empty(outsider.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Group_except_skips_the_excluded_members(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(0);
        await cluster.Hub(0).Groups.AddToGroupAsync(a.ConnectionId, "room");
        await cluster.Hub(0).Groups.AddToGroupAsync(b.ConnectionId, "room");

        await cluster.Hub(0).Clients.GroupExcept("room", [b.ConnectionId]).SendAsync(TestClient.SendMethod, "not for b");

        await cluster.FlushAsync(a, b);
        Assert.Equal(["not for b"], a.Texts);
        Assert.Empty(b.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Adding_a_connection_to_a_group_twice_still_delivers_once(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        await cluster.Hub(0).Groups.AddToGroupAsync(a.ConnectionId, "room");
        await cluster.Hub(0).Groups.AddToGroupAsync(a.ConnectionId, "room");

        await cluster.Hub(0).Clients.Group("room").SendAsync(TestClient.SendMethod, "once");

        await cluster.FlushAsync(a);
        Assert.Equal(["once"], a.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Removing_a_connection_from_a_group_it_is_not_in_completes(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var a = await cluster.ConnectAsync(0);

        await Eventually.WithinAsync(cluster.Hub(0).Groups.RemoveFromGroupAsync(a.ConnectionId, "never-joined"), "RemoveFromGroupAsync");

        await cluster.Hub(0).Clients.Group("never-joined").SendAsync(TestClient.SendMethod, "nobody");
        await cluster.FlushAsync(a);
        Assert.Empty(a.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Hub_methods_can_join_a_group_and_send_to_it(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(0);
        await a.Connection.InvokeAsync(nameof(TestHub.JoinGroup), "room");

        await b.Connection.InvokeAsync(nameof(TestHub.SendToGroup), "room", "via hub");
        await b.Connection.InvokeAsync(nameof(TestHub.Echo), "echo");

        await a.WaitForTextAsync("via hub");
        await b.WaitForAsync(m => m.Method == TestClient.EchoMethod && m.Text == "echo", "its echo");
        await cluster.FlushAsync(a, b);
        Assert.Equal(["via hub"], a.Texts);
        Assert.Empty(b.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Send_to_user_reaches_all_of_their_connections(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var alice1 = await cluster.ConnectAsync(0, user: "alice");
        var alice2 = await cluster.ConnectAsync(0, user: "alice");
        var bob = await cluster.ConnectAsync(0, user: "bob");

        await cluster.Hub(0).Clients.User("alice").SendAsync(TestClient.SendMethod, "for alice");

        await cluster.FlushAsync(alice1, alice2, bob);
        Assert.Equal(["for alice"], alice1.Texts);
        Assert.Equal(["for alice"], alice2.Texts);
        Assert.Empty(bob.Texts);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_returns_the_client_result(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var a = await cluster.ConnectAsync(0);

        var result = await Eventually.WithinAsync(
            cluster.Hub(0).Clients.Client(a.ConnectionId).InvokeAsync<int>(TestClient.GetNumberMethod, "four", CancellationToken.None),
            "the client result");

        Assert.Equal(4, result);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_whose_client_throws_fails_with_HubException(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        a.OnGetNumber = _ => throw new InvalidOperationException("no number for you");

        var ex = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(
            cluster.Hub(0).Clients.Client(a.ConnectionId).InvokeAsync<int>(TestClient.GetNumberMethod, "x", CancellationToken.None),
            "the failed client result"));

        Assert.Contains("no number for you", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_on_an_unknown_connection_fails_with_connection_does_not_exist(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        _ = await cluster.ConnectAsync(0);

        var ex = await Assert.ThrowsAsync<IOException>(() => Eventually.WithinAsync(
            cluster.Hub(0).Clients.Client("no-such-connection").InvokeAsync<int>(TestClient.GetNumberMethod, "x", CancellationToken.None),
            "the invoke to fail"));

        Assert.Equal(ClientResults.DoesNotExistMessage("no-such-connection"), ex.Message);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_whose_connection_disconnects_mid_invocation_fails_with_IOException_naming_it(HubProtocolKind protocol)
    {
        await using var cluster = await StartNodeAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        using var held = a.HoldGetNumber();

        var invoke = cluster.Hub(0).Clients.Client(a.ConnectionId).InvokeAsync<int>(TestClient.GetNumberMethod, "x", CancellationToken.None);
        await Eventually.WithinAsync(held.Invoked, "the client to receive the invocation");
        await a.StopAsync();

        // As SignalR's own ClientResultsManager: the connection is named.
        var ex = await Assert.ThrowsAsync<IOException>(() => Eventually.WithinAsync(invoke, "the pending invoke to fail"));

        Assert.Equal($"Connection '{a.ConnectionId}' disconnected.", ex.Message);
    }
}
