using Microsoft.AspNetCore.SignalR;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests;

/// <summary>
/// Client results (<c>Clients.Client(id).InvokeAsync&lt;T&gt;</c>) for a connection on another node, with the same
/// results and errors as SignalR's own managers (the client-result cases of ASP.NET Core's
/// <c>ScaleoutHubLifetimeManagerTests</c>).
/// </summary>
public sealed class CrossNodeClientResultTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private Task<TestCluster> StartClusterAsync(HubProtocolKind protocol, int nodes = 2) => TestCluster.StartAsync(redis.Server, nodes, protocol, output);

    private static Task<int> GetNumberAsync(TestCluster cluster, int fromNode, TestClient target, string argument, CancellationToken cancellationToken = default)
        => cluster.Hub(fromNode).Clients.Client(target.ConnectionId).InvokeAsync<int>(TestClient.GetNumberMethod, argument, cancellationToken);

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_on_a_connection_on_another_node_returns_the_client_result(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);

        var result = await Eventually.WithinAsync(GetNumberAsync(cluster, 1, a, "seven!!"), "the client result");

        Assert.Equal(7, result);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_on_an_unknown_connection_fails_with_connection_does_not_exist(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        _ = await cluster.ConnectAsync(0);
        _ = await cluster.ConnectAsync(1);

        var fromNode0 = await Assert.ThrowsAsync<IOException>(() => Eventually.WithinAsync(
            cluster.Hub(0).Clients.Client("nobody").InvokeAsync<int>(TestClient.GetNumberMethod, "x", CancellationToken.None), "the invoke to fail"));
        var fromNode1 = await Assert.ThrowsAsync<IOException>(() => Eventually.WithinAsync(
            cluster.Hub(1).Clients.Client("nobody").InvokeAsync<int>(TestClient.GetNumberMethod, "x", CancellationToken.None), "the invoke to fail"));

        Assert.Equal(ClientResults.DoesNotExistMessage("nobody"), fromNode0.Message);
        Assert.Equal(ClientResults.DoesNotExistMessage("nobody"), fromNode1.Message);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_on_a_connection_on_another_node_whose_client_throws_fails_with_HubException(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        a.OnGetNumber = _ => throw new InvalidOperationException("no number for you");

        var ex = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(GetNumberAsync(cluster, 1, a, "x"), "the failed client result"));

        Assert.Contains("no number for you", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_on_a_connection_on_another_node_that_returns_the_wrong_type_fails_with_HubException(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);

        // The client answers "GetText" with a string; the server asks for an int.
        var ex = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(
            cluster.Hub(1).Clients.Client(a.ConnectionId).InvokeAsync<int>(TestClient.GetTextMethod, "x", CancellationToken.None),
            "the mistyped client result"));

        Assert.Contains("Int32", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_on_a_connection_on_another_node_that_disconnects_mid_invocation_fails_with_connection_disconnected(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        using var held = a.HoldGetNumber();

        var invoke = GetNumberAsync(cluster, 1, a, "x");
        await Eventually.WithinAsync(held.Invoked, "the client to receive the invocation");
        await a.StopAsync();

        var ex = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(invoke, "the pending invoke to fail"));

        Assert.Equal("Connection disconnected.", ex.Message);
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Concurrent_invokes_from_two_nodes_on_one_connection_each_get_their_own_result(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        var a = await cluster.ConnectAsync(0);
        var bothArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var arrivals = 0;
        a.OnGetNumber = async argument =>
        {
            // Hold both invocations open until both are pending, so their ids must coexist.
            if (Interlocked.Increment(ref arrivals) == 2)
            {
                bothArrived.TrySetResult();
            }

            await bothArrived.Task;
            return argument.Length;
        };

        var fromNode0 = GetNumberAsync(cluster, 0, a, "two");
        var fromNode1 = GetNumberAsync(cluster, 1, a, "eleven-long");

        Assert.Equal(3, await Eventually.WithinAsync(fromNode0, "the result asked for by node 0"));
        Assert.Equal(11, await Eventually.WithinAsync(fromNode1, "the result asked for by node 1"));
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invokes_on_connections_on_different_nodes_do_not_collide(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol, nodes: 3);
        var a = await cluster.ConnectAsync(0);
        var b = await cluster.ConnectAsync(1);
        var aAnswer = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var aInvoked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        a.OnGetNumber = _ =>
        {
            aInvoked.TrySetResult();
            return aAnswer.Task;
        };
        b.OnGetNumber = _ => throw new InvalidOperationException("b says no");

        try
        {
            var invokeA = GetNumberAsync(cluster, 2, a, "x");
            var invokeB = GetNumberAsync(cluster, 2, b, "x");
            await Eventually.WithinAsync(aInvoked.Task, "a to receive its invocation");

            await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(invokeB, "b's failed result"));
            Assert.False(invokeA.IsCompleted, "b's error must not complete a's invocation");

            aAnswer.TrySetResult(3);
            Assert.Equal(3, await Eventually.WithinAsync(invokeA, "a's result"));
        }
        finally
        {
            aAnswer.TrySetResult(0);
        }
    }
}
