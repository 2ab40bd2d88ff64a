using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>The reader's own cost, counted: the XREADs it sends and the writes it makes to its connections, against
/// the messages it dispatched.</summary>
public sealed class ReadMetricsTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    [Fact]
    public async Task A_receiving_node_counts_its_reads_and_its_writes_to_connections()
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output);
        await using var first = await cluster.ConnectAsync(1);
        await using var second = await cluster.ConnectAsync(1);
        // The receiving node's counts only: tests of other classes run at the same time in this process.
        var receiver = cluster.Nodes[1].Services.GetRequiredService<BackplaneNode>().NodeId;
        using var reads = new CounterTotal("signalr.redis_streams.reads", receiver);
        using var writes = new CounterTotal("signalr.redis_streams.connection_writes", receiver);
        using var dispatched = new CounterTotal("signalr.redis_streams.dispatched", receiver);

        const int messages = 20;
        var sends = Enumerable.Range(1, messages).Select(i => cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, $"m{i}")).ToArray();
        await Task.WhenAll(sends);
        await first.WaitForTextAsync($"m{messages}");
        await second.WaitForTextAsync($"m{messages}");

        // Each message reached both connections; every write carried at least one of them, and every message went out in
        // some write. Reaching them took at least one answered read.
        await Eventually.TrueAsync(() => dispatched.Total >= 2 * messages, "the receiving node counts what it dispatched");
        Assert.InRange(writes.Total, 2, dispatched.Total);
        Assert.True(reads.Total >= 1, $"reads counted: {reads.Total}");
    }
}
