using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Internal;

namespace SignalR.RedisStreams.Tests.Parts;

/// <summary>How each client result ends, without Redis or servers (the same cases run against real servers in
/// ContractCaseTests).</summary>
public sealed class ClientResultsManagerTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private readonly ClientResultsManager _results = new("node-a", new ServiceCollection().AddLogging().AddSignalR().Services.BuildServiceProvider().GetRequiredService<IHubProtocolResolver>());

    [Fact]
    public async Task The_right_connection_completes_its_invocation()
    {
        var id = _results.NewInvocationId();
        var pending = _results.Add<int>(id, "c1", node: "", CancellationToken.None);

        Assert.True(_results.TryComplete("c1", CompletionMessage.WithResult(id, 7)));

        Assert.Equal(7, await pending.Task.WaitAsync(Deadline));
        Assert.False(_results.TryGetReturnType(id, out _));
    }

    [Fact]
    public async Task A_completion_from_another_connection_throws_and_leaves_the_invocation_pending()
    {
        var id = _results.NewInvocationId();
        var pending = _results.Add<int>(id, "c1", node: "", CancellationToken.None);

        var ex = Assert.Throws<InvalidOperationException>(() => _results.TryComplete("c2", CompletionMessage.WithResult(id, 5)));

        Assert.Equal($"Connection ID 'c2' is not valid for invocation ID '{id}'.", ex.Message);
        Assert.False(pending.Task.IsCompleted);
        Assert.True(_results.TryComplete("c1", CompletionMessage.WithResult(id, 6)));
        Assert.Equal(6, await pending.Task.WaitAsync(Deadline));
    }

    [Fact]
    public async Task Cancelling_fails_the_invocation_as_canceled_by_the_server_and_forgets_it()
    {
        using var cancel = new CancellationTokenSource();
        var id = _results.NewInvocationId();
        var pending = _results.Add<int>(id, "c1", node: "", cancel.Token);

        await cancel.CancelAsync();

        var ex = await Assert.ThrowsAsync<HubException>(() => pending.Task.WaitAsync(Deadline));
        Assert.Equal("Invocation canceled by the server.", ex.Message);
        Assert.False(_results.TryGetReturnType(id, out _));
        Assert.False(_results.TryComplete("c1", CompletionMessage.WithResult(id, 1))); // a late answer is unknown
    }

    [Fact]
    public async Task A_local_connection_that_leaves_fails_its_invocations_with_IOException_naming_it()
    {
        var local = _results.Add<int>(_results.NewInvocationId(), "c1", node: "", CancellationToken.None);
        var other = _results.Add<int>(_results.NewInvocationId(), "c2", node: "", CancellationToken.None);

        _results.ConnectionLeft("c1");

        var ex = await Assert.ThrowsAsync<IOException>(() => local.Task.WaitAsync(Deadline));
        Assert.Equal("Connection 'c1' disconnected.", ex.Message);
        Assert.False(other.Task.IsCompleted);
    }

    [Fact]
    public async Task A_node_that_is_gone_fails_the_invocations_on_its_connections_with_connection_disconnected()
    {
        var onB = _results.Add<int>(_results.NewInvocationId(), "c1", node: "node-b", CancellationToken.None);
        var onC = _results.Add<int>(_results.NewInvocationId(), "c2", node: "node-c", CancellationToken.None);

        _results.NodeGone("node-b");

        var ex = await Assert.ThrowsAsync<HubException>(() => onB.Task.WaitAsync(Deadline));
        Assert.Equal("Connection disconnected.", ex.Message);
        Assert.False(onC.Task.IsCompleted);
    }

    [Fact]
    public async Task A_remote_answer_that_the_connection_disconnected_fails_with_connection_disconnected()
    {
        var id = _results.NewInvocationId();
        var pending = _results.Add<int>(id, "c1", node: "node-b", CancellationToken.None);

        Assert.True(_results.CompleteFromRemote(id, ResultStatus.ConnectionDisconnected, "", default));

        var ex = await Assert.ThrowsAsync<HubException>(() => pending.Task.WaitAsync(Deadline));
        Assert.Equal("Connection disconnected.", ex.Message);
    }

    [Fact]
    public void A_proxied_invocation_is_answered_only_by_its_connection_and_then_names_the_waiting_node()
    {
        _results.AddProxied("node-b.1", origin: "node-b", connectionId: "c1");

        var ex = Assert.Throws<InvalidOperationException>(() => _results.TryTakeProxied("c9", "node-b.1", out _));
        Assert.Equal("Connection ID 'c9' is not valid for invocation ID 'node-b.1'.", ex.Message);

        Assert.True(_results.TryTakeProxied("c1", "node-b.1", out var origin));
        Assert.Equal("node-b", origin);
        Assert.False(_results.TryTakeProxied("c1", "node-b.1", out _));
    }

    [Fact]
    public void A_connection_that_leaves_hands_back_the_proxied_invocations_whose_nodes_wait()
    {
        _results.AddProxied("node-b.1", origin: "node-b", connectionId: "c1");
        _results.AddProxied("node-c.4", origin: "node-c", connectionId: "c2");

        var orphans = _results.ConnectionLeft("c1");

        Assert.Equal([("node-b.1", "node-b")], orphans!);
        Assert.True(_results.TryGetReturnType("node-c.4", out _));
    }

    [Fact]
    public void Invocation_ids_are_unique_and_carry_the_node()
    {
        var ids = Enumerable.Range(0, 100).Select(_ => _results.NewInvocationId()).ToHashSet();

        Assert.Equal(100, ids.Count);
        Assert.All(ids, id => Assert.StartsWith("node-a.", id, StringComparison.Ordinal));
    }
}
