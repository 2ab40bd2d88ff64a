using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>Foreign and broken entries in the stream, and a node that falls silent, against a real redis-server.</summary>
public sealed class StreamFaultTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private static readonly string HubName = typeof(TestHub).FullName!;

    [Fact]
    public async Task Garbage_entries_are_skipped_and_counted_and_delivery_goes_on()
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output);
        await using var a = await cluster.ConnectAsync(0);
        await using var b = await cluster.ConnectAsync(1);
        using var malformed = new CounterTotal("signalr.redis_streams.malformed");
        var stream = cluster.StreamKey;

        await redis.Server.ExecuteAsync("XADD", stream, "*", "foo", "bar");
        await redis.Server.ExecuteAsync("XADD", stream, "*", "e", "\u0004\u0001\u0001\u0000\u0001x\u0000\u0000"); // format 4
        await redis.Server.ExecuteAsync("XADD", stream, "*", "e", "\u0002\u0001\u0001\u0000\u0001x\u0000\u0000\u0005"); // count past the end
        await redis.Server.ExecuteAsync("XADD", stream, "*", "v", "1", "n", "x", "s", "1", "k", "1", "h", HubName, "t", "", "p", ""); // format 1
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "after garbage");

        await a.WaitForTextAsync("after garbage");
        await b.WaitForTextAsync("after garbage");
        // 4 bad entries, seen by each of the 2 nodes
        await Eventually.TrueAsync(() => malformed.Total >= 8, $"8 malformed entries counted (saw {malformed.Total})");
        Assert.Equal(["after garbage"], a.Texts);
        Assert.Equal(["after garbage"], b.Texts);
    }

    [Fact]
    public async Task A_malformed_packet_inside_a_batch_is_skipped_and_counted_and_the_batchs_other_packets_are_delivered()
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output);
        await using var a = await cluster.ConnectAsync(0);
        using var malformed = new CounterTotal("signalr.redis_streams.malformed");
        var stream = cluster.StreamKey;
        byte[] Packet(string text) => StreamEntryFormat.EncodePacket(new StreamEntry
        {
            Kind = EntryKind.All, Node = "outsider", Hub = HubName,
            Messages = [new SerializedMessage("json", System.Text.Encoding.UTF8.GetBytes($"{{\"type\":1,\"target\":\"{TestClient.SendMethod}\",\"arguments\":[\"{text}\"]}}\u001e"))],
        }, new StreamEntryFormat.PayloadWriter());
        var packets = new[] { Packet("first"), [0x02, 0x01, 0x63], Packet("third") }; // the middle one has an unknown kind

        var batch = StreamEntryFormat.EncodeBatch(packets, 0, 3, p => p, new StreamEntryFormat.PayloadWriter());
        await using (var connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.Server.ConnectionString))
        {
            await connection.GetDatabase().StreamAddAsync(stream, "e", batch);
        }
        await cluster.Hub(1).Clients.All.SendAsync(TestClient.SendMethod, "after");

        await a.WaitForTextAsync("after");
        Assert.Equal(["first", "third", "after"], a.Texts);
        await Eventually.TrueAsync(() => malformed.Total >= 2, $"the bad packet counted by both nodes (saw {malformed.Total})");
    }

    [Fact]
    public async Task A_node_that_stops_heartbeating_is_dropped_and_its_pending_client_results_fail()
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output);
        var stream = cluster.StreamKey;
        var node = cluster.Nodes[0].Services.GetRequiredService<BackplaneNode>();

        // A node that exists only in Redis: one heartbeat, one registered connection, then silence (as if killed).
        var ghost = "ghost-" + Guid.NewGuid().ToString("N")[..6];
        var heartbeat = StreamEntryFormat.Encode(new StreamEntry { Kind = EntryKind.Heartbeat, Node = ghost });
        await redis.Server.ExecuteAsync(["XADD", stream, "*", .. heartbeat.SelectMany(f => new[] { (string)f.Name!, f.Value.IsNullOrEmpty ? "" : (string)f.Value! })]);
        await redis.Server.ExecuteAsync("HSET", cluster.StreamKey + ":connections", "ghost-connection", ghost);
        await Eventually.TrueAsync(() => node.Membership.LiveNodes.Contains(ghost), "the ghost node is seen");

        var started = DateTime.UtcNow;
        var invocation = cluster.Hub(0).Clients.Client("ghost-connection").InvokeAsync<int>(TestClient.GetNumberMethod, "x", CancellationToken.None);

        var ex = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(invocation, "the invocation fails", TimeSpan.FromSeconds(20)));
        Assert.Equal("Connection disconnected.", ex.Message);
        Assert.DoesNotContain(ghost, node.Membership.LiveNodes);
        Assert.True(DateTime.UtcNow - started >= TestCluster.TestHeartbeatInterval, "failed only once the node was judged silent");
        // The registry no longer points at the dead node: a new invocation fails fast as "does not exist".
        await Eventually.TrueAsync(async () => (await redis.Server.ExecuteAsync("HEXISTS", stream + ":connections", "ghost-connection")).ToString() == "0",
            "the dead node's connections are removed from the registry");
        var io = await Assert.ThrowsAsync<IOException>(() => cluster.Hub(1).Clients.Client("ghost-connection").InvokeAsync<int>(TestClient.GetNumberMethod, "x", CancellationToken.None));
        Assert.Equal("Connection 'ghost-connection' does not exist.", io.Message);
    }

    [Fact]
    public async Task The_other_nodes_drop_a_node_that_stops_and_keep_delivering()
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 3, HubProtocolKind.Json, output);
        await using var a = await cluster.ConnectAsync(0);
        await using var c = await cluster.ConnectAsync(2);
        var nodeA = cluster.Nodes[0].Services.GetRequiredService<BackplaneNode>();
        var nodeB = cluster.Nodes[1].Services.GetRequiredService<BackplaneNode>().NodeId;
        await Eventually.TrueAsync(() => nodeA.Membership.LiveNodes.Contains(nodeB), "node A hears node B");

        await cluster.StopNodeAsync(1);

        await Eventually.TrueAsync(() => !nodeA.Membership.LiveNodes.Contains(nodeB), "node A drops node B");
        await cluster.Hub(2).Clients.All.SendAsync(TestClient.SendMethod, "still here");
        await a.WaitForTextAsync("still here");
        await c.WaitForTextAsync("still here");
    }
}
