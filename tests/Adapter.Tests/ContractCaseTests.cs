using System.Diagnostics;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests;

/// <summary>
/// Four cases of SignalR's <c>HubLifetimeManager</c> contract as Microsoft's Redis backplane implements it (ASP.NET
/// Core's <c>ScaleoutHubLifetimeManagerTests</c>, <c>HubLifetimeManagerTestsBase</c> and <c>ClientResultsManager</c>):
/// a connection the server knows never misses the next message, even on a node that has just started; a client result
/// whose connection leaves the node fails with <c>IOException("Connection '{id}' disconnected.")</c>; a cancelled one
/// fails with <c>HubException("Invocation canceled by the server.")</c>; and a completion from the wrong connection is
/// refused with <c>InvalidOperationException</c> while the invocation keeps waiting for the right one.
/// </summary>
public sealed class ContractCaseTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private const int FreshStarts = 100;

    /// <summary>Fresh two-node starts run this many at a time (each on its own stream), to keep 100 of them fast on 2 cores.</summary>
    private const int FreshStartsAtOnce = 4;

    /// <summary>One-way latency of the simulated slow network between node B and Redis.</summary>
    private static readonly TimeSpan SlowNetworkLatency = TimeSpan.FromMilliseconds(150);

    private static Task<int> GetNumberAsync(TestCluster cluster, int fromNode, string connectionId, string argument, CancellationToken cancellationToken = default)
        => cluster.Hub(fromNode).Clients.Client(connectionId).InvokeAsync<int>(TestClient.GetNumberMethod, argument, cancellationToken);

    private static string DisconnectedMessage(string connectionId) => $"Connection '{connectionId}' disconnected.";

    private static string NotValidForInvocationMessage(string connectionId, string invocationId)
        => $"Connection ID '{connectionId}' is not valid for invocation ID '{invocationId}'.";

    // ---------------------------------------------------------------- 1. the start-up window

    /// <summary>Node B's host start must not complete, nor any connect on B, before B's stream reader reads from a
    /// concrete position: else a message node A sends right after B's client is known lands before B's start position
    /// and is never delivered.</summary>
    [Fact]
    public async Task A_client_known_to_a_freshly_started_node_receives_the_next_message_another_node_sends_in_100_fresh_starts()
    {
        var clock = Stopwatch.StartNew();
        var misses = new List<int>();
        for (var first = 0; first < FreshStarts; first += FreshStartsAtOnce)
        {
            var batch = Enumerable.Range(first, Math.Min(FreshStartsAtOnce, FreshStarts - first)).ToList();
            var delivered = await Task.WhenAll(batch.Select(i => FreshTwoNodeStartDeliversAsync(i, slowNetworkForB: null)));
            misses.AddRange(batch.Where((_, k) => !delivered[k]));
        }

        var summary = $"missed {misses.Count} of {FreshStarts} (iterations [{string.Join(", ", misses)}]), " +
            $"{FreshStarts} fresh two-node starts, {FreshStartsAtOnce} at a time, in {clock.Elapsed.TotalSeconds:0.0} s";
        output.WriteLine(summary);
        Assert.True(misses.Count == 0, summary);
    }

    /// <summary>The same, with node B on a slow network to Redis (every byte 150 ms late each way): whatever B does to
    /// position its reader takes several round trips, so the window between "B has started / knows the client" and
    /// "B reads from a concrete position" is wide open unless B waits for its reader before it completes its start and
    /// its connects.</summary>
    [Fact]
    public async Task A_client_known_to_a_freshly_started_node_with_a_slow_network_to_Redis_receives_the_next_message_another_node_sends()
    {
        const int Starts = 3;
        var clock = Stopwatch.StartNew();
        await using var slowNetwork = SlowNetworkProxy.Start(redis.Server.Port, SlowNetworkLatency);
        var delivered = await Task.WhenAll(Enumerable.Range(0, Starts).Select(i => FreshTwoNodeStartDeliversAsync(i, slowNetwork)));

        var missed = delivered.Count(d => !d);
        var summary = $"missed {missed} of {Starts} fresh two-node starts with node B {SlowNetworkLatency.TotalMilliseconds:0} ms " +
            $"(each way) from Redis, in {clock.Elapsed.TotalSeconds:0.0} s";
        output.WriteLine(summary);
        Assert.True(missed == 0, summary);
    }

    /// <summary>Starts two fresh nodes on a stream of their own (A, then B), connects a client to B and waits until B
    /// knows it (Ping answered), then sends a message to everyone from A's hub context. Returns whether the client got
    /// it. The verdict is exact and quick: A then sends probes until one reaches the client; B reads A's entries in
    /// stream order, so the message, appended before every probe, has arrived by then or never will.</summary>
    private async Task<bool> FreshTwoNodeStartDeliversAsync(int iteration, SlowNetworkProxy? slowNetworkForB)
    {
        var id = TestCluster.NewIsolationId();
        void Configure(RedisStreamsOptions o)
        {
            TestCluster.ApplyTestDefaults(o, id);
        }

        void ConfigureB(RedisStreamsOptions o)
        {
            Configure(o);
            if (slowNetworkForB is not null)
            {
                // Both of B's connections (commands and the reader's) go through the slow hop.
                o.ConnectionFactory = async log => await ConnectionMultiplexer.ConnectAsync(slowNetworkForB.ConnectionString, log);
            }
        }

        var clock = Stopwatch.StartNew();
        await using var a = await TestNode.StartAsync(0, redis.Server.ConnectionString, Configure, output: null);
        await using var b = await TestNode.StartAsync(1, redis.Server.ConnectionString, ConfigureB, output: null);
        var started = clock.Elapsed;
        await using var client = await TestClient.ConnectAsync($"client{iteration}", 1, b.HubUrl, HubProtocolKind.Json, user: null);
        var known = clock.Elapsed;

        var message = $"the next message {iteration}";
        await a.HubContext.Clients.All.SendAsync(TestClient.SendMethod, message);

        var probe = 0;
        while (true)
        {
            probe++;
            await a.HubContext.Clients.All.SendAsync(TestClient.ProbeMethod, probe);
            try
            {
                await client.WaitForAsync(m => m.Method == TestClient.ProbeMethod, "a probe from node A", TimeSpan.FromSeconds(1));
                break;
            }
            catch (TimeoutException) when (clock.Elapsed < TestCluster.ReadyTimeout)
            {
                // Not even a probe yet: send another.
            }
        }

        var delivered = client.HasReceived(message);
        if (!delivered || slowNetworkForB is not null)
        {
            output.WriteLine(
                $"{DateTime.UtcNow:HH:mm:ss.fff} start {iteration}: {(delivered ? "delivered" : "MISSED")}; nodes started in " +
                $"{started.TotalMilliseconds:0} ms, client known at {known.TotalMilliseconds:0} ms, verdict at {clock.Elapsed.TotalMilliseconds:0} ms " +
                $"(after {probe} probe(s))");
        }

        return delivered;
    }

    // ---------------------------------------------------------------- 2. a disconnect fails pending client results

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task Invoke_whose_connection_disconnects_on_the_same_node_fails_with_IOException_naming_it_while_one_from_another_node_fails_with_HubException(HubProtocolKind protocol)
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, protocol, output);
        var a = await cluster.ConnectAsync(0);
        var bothArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var never = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var arrivals = 0;
        a.OnGetNumber = _ =>
        {
            if (Interlocked.Increment(ref arrivals) == 2)
            {
                bothArrived.TrySetResult();
            }

            return never.Task; // never answered: the connection leaves first
        };

        try
        {
            var sameNode = GetNumberAsync(cluster, 0, a.ConnectionId, "from node 0");
            var otherNode = GetNumberAsync(cluster, 1, a.ConnectionId, "from node 1");
            await Eventually.WithinAsync(bothArrived.Task, "the client to receive both invocations");
            await a.StopAsync();

            var local = await Assert.ThrowsAsync<IOException>(() => Eventually.WithinAsync(sameNode, "the same-node invoke to fail"));
            Assert.Equal(DisconnectedMessage(a.ConnectionId), local.Message);
            var remote = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(otherNode, "the other node's invoke to fail"));
            Assert.Equal("Connection disconnected.", remote.Message);
        }
        finally
        {
            never.TrySetResult(0);
        }
    }

    // ---------------------------------------------------------------- 3. cancelling a client result

    [Theory]
    [InlineData(HubProtocolKind.Json, false)]
    [InlineData(HubProtocolKind.MessagePack, false)]
    [InlineData(HubProtocolKind.Json, true)]
    [InlineData(HubProtocolKind.MessagePack, true)]
    public async Task Cancelling_an_invoke_fails_it_with_HubException_and_later_invokes_still_work(HubProtocolKind protocol, bool invokedFromAnotherNode)
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, protocol, output);
        var a = await cluster.ConnectAsync(0);
        var from = invokedFromAnotherNode ? 1 : 0;
        using var held = a.HoldGetNumber();

        using var cancel = new CancellationTokenSource();
        var invoke = GetNumberAsync(cluster, from, a.ConnectionId, "x", cancel.Token);
        await Eventually.WithinAsync(held.Invoked, "the client to receive the invocation");

        await cancel.CancelAsync();
        var ex = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(invoke, "the cancelled invoke to end"));
        Assert.Equal("Invocation canceled by the server.", ex.Message);

        // The client's late answer to the cancelled invocation is dropped quietly; the connection keeps working.
        held.Release(99);
        a.OnGetNumber = argument => Task.FromResult(argument.Length);
        Assert.Equal(5, await Eventually.WithinAsync(GetNumberAsync(cluster, from, a.ConnectionId, "after"), "a later client result"));
        Assert.False(a.Closed.IsCompleted, "the late answer must not close the connection");
    }

    /// <summary>The invoking node is 150 ms (each way) from Redis, the target's node is not: the target's node reads the
    /// invocation and the client has it about 150 ms before the invoking node hears that its append succeeded. A cancel
    /// in that window still ends the invoke as SignalR does, with HubException, not a bare OperationCanceledException.</summary>
    [Fact]
    public async Task Cancelling_an_invoke_before_the_invoking_node_hears_its_append_succeed_fails_it_with_HubException()
    {
        var id = TestCluster.NewIsolationId();
        await using var slowNetwork = SlowNetworkProxy.Start(redis.Server.Port, SlowNetworkLatency);
        void Configure(RedisStreamsOptions o) => TestCluster.ApplyTestDefaults(o, id);
        void ConfigureSlow(RedisStreamsOptions o)
        {
            Configure(o);
            o.ConnectionFactory = async log => await ConnectionMultiplexer.ConnectAsync(slowNetwork.ConnectionString, log);
        }

        await using var near = await TestNode.StartAsync(0, redis.Server.ConnectionString, Configure, output);
        await using var far = await TestNode.StartAsync(1, redis.Server.ConnectionString, ConfigureSlow, output);
        await using var client = await TestClient.ConnectAsync("target", 0, near.HubUrl, HubProtocolKind.Json, user: null);
        using var held = client.HoldGetNumber();

        using var cancel = new CancellationTokenSource();
        var invoke = far.HubContext.Clients.Client(client.ConnectionId).InvokeAsync<int>(TestClient.GetNumberMethod, "x", cancel.Token);
        await Eventually.WithinAsync(held.Invoked, "the client to receive the invocation");
        await cancel.CancelAsync();

        var ex = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(invoke, "the cancelled invoke to end"));
        Assert.Equal("Invocation canceled by the server.", ex.Message);
        held.Release(1);
    }

    // ---------------------------------------------------------------- 4. a completion from the wrong connection

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_completion_from_the_wrong_connection_throws_InvalidOperationException_and_the_invoke_still_takes_the_right_connections_answer(bool invokedFromAnotherNode)
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output);
        // Both connections are on node 0; the invoke starts on node 0 itself, or on node 1 (then node 0 proxies it).
        await using var target = await RawJsonHubClient.ConnectAsync("target", cluster.Nodes[0].HubUrl);
        var other = await cluster.ConnectAsync(0, name: "other");
        var manager = cluster.Nodes[0].Services.GetRequiredService<HubLifetimeManager<TestHub>>();

        var invoke = GetNumberAsync(cluster, invokedFromAnotherNode ? 1 : 0, target.ConnectionId, "x");
        var invocation = await target.WaitForInvocationAsync(TestClient.GetNumberMethod);
        var invocationId = invocation.InvocationId ?? throw new InvalidOperationException("The client-result invocation carries no invocation id.");

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(
            () => manager.SetConnectionResultAsync(other.ConnectionId, CompletionMessage.WithResult(invocationId, 5)));
        Assert.Equal(NotValidForInvocationMessage(other.ConnectionId, invocationId), ex.Message);
        Assert.False(invoke.IsCompleted, $"the wrong connection's completion must leave the invocation pending, but it ended: {invoke.Status}");

        await target.SendResultAsync(invocationId, 7);
        Assert.Equal(7, await Eventually.WithinAsync(invoke, "the right connection's answer"));
    }
}
