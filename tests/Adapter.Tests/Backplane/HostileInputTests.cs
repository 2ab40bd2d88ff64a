using System.Text;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>Hostile data written straight into the stream (with StackExchange.Redis, as any Redis user with XADD rights
/// could) while two real nodes deliver real traffic: 10,000 garbage entries, two 64 MiB entries, forged entries that
/// claim another node's sequence numbers, and entries for a hub nobody serves. Each is skipped and counted, nothing
/// crashes, and every legitimate message arrives once and in order.</summary>
public sealed class HostileInputTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private static readonly string HubName = typeof(TestHub).FullName!;
    private const int LegitimatePerNode = 300;

    [Fact]
    public async Task Hostile_entries_are_skipped_and_counted_and_every_legitimate_message_arrives_once_in_order()
    {
        // The nodes log to the test output only at Error: 20,000 "skipped malformed entry" warnings would drown it.
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output: null);
        await using var a = await cluster.ConnectAsync(0);
        await using var b = await cluster.ConnectAsync(1);
        // Counted on this test's nodes only: tests of other classes run at the same time in this process.
        string[] nodes = [.. cluster.Nodes.Select(n => n.Services.GetRequiredService<BackplaneNode>().NodeId)];
        using var malformed = new CounterTotal("signalr.redis_streams.malformed", nodes);
        using var forged = new CounterTotal("signalr.redis_streams.forged", nodes);
        using var duplicates = new CounterTotal("signalr.redis_streams.duplicates_dropped", nodes);
        using var unknownHub = new CounterTotal("signalr.redis_streams.unknown_hub", nodes);
        var stream = cluster.StreamKey;
        var node1 = nodes[1];

        // Legitimate traffic from both nodes, all the while.
        var legitimate = Enumerable.Range(0, 2).Select(n => Task.Run(async () =>
        {
            for (var i = 1; i <= LegitimatePerNode; i++)
            {
                await cluster.Hub(n).Clients.All.SendAsync(TestClient.SendMethod, $"n{n}-{i}");
            }
        })).ToArray();

        var options = ConfigurationOptions.Parse(redis.Server.ConnectionString);
        options.AsyncTimeout = options.SyncTimeout = 60_000; // 64 MiB appends on a busy machine
        await using var hostile = await ConnectionMultiplexer.ConnectAsync(options);
        var db = hostile.GetDatabase();
        var random = new Random(14);

        // 10,000 garbage entries: random bytes in the entry field, unknown fields, empty values.
        var garbage = new List<Task>(10_000);
        for (var i = 0; i < 10_000; i++)
        {
            var bytes = new byte[random.Next(0, 64)];
            random.NextBytes(bytes);
            garbage.Add((i % 3) switch
            {
                0 => db.StreamAddAsync(stream, "e", bytes),
                1 => db.StreamAddAsync(stream, "junk" + i, bytes),
                _ => db.StreamAddAsync(stream, [new NameValueEntry("e", ""), new NameValueEntry("x", bytes)]),
            });
        }

        await Task.WhenAll(garbage);

        // Two entries of 64 MiB: random bytes where a packet belongs, and a valid-looking header followed by 64 MiB.
        var huge = new byte[64 * 1024 * 1024];
        random.NextBytes(huge);
        await db.StreamAddAsync(stream, "e", huge);
        huge[0] = 2; // format version 2, then nonsense
        await db.StreamAddAsync(stream, "e", huge);
        huge = null;

        // Forged entries claiming node 1's numbers: far ahead (would silence node 1 if believed), and a replay of its first.
        await db.StreamAddAsync(stream, StreamEntryFormat.Encode(Packet(node1, 1_000_000, HubName, "forged ahead")));
        await db.StreamAddAsync(stream, StreamEntryFormat.Encode(Packet(node1, 1, HubName, "forged replay")));

        // Entries for a hub nobody serves.
        for (var i = 1; i <= 10; i++)
        {
            await db.StreamAddAsync(stream, StreamEntryFormat.Encode(Packet("outsider", i, "Nobody.Serves.ThisHub", "unknown hub")));
        }

        await Task.WhenAll(legitimate).WaitAsync(TimeSpan.FromMinutes(1));
        await a.WaitForTextAsync($"n1-{LegitimatePerNode}", TimeSpan.FromSeconds(60));
        await b.WaitForTextAsync($"n0-{LegitimatePerNode}", TimeSpan.FromSeconds(60));
        // Sent after every hostile entry, so its arrival on both nodes shows each reader got past the 64 MiB entries:
        // on a busy machine one such reply can take longer than the reader's timeout, and the reader retries with
        // fewer entries per read until it gets through (the flush below waits 15 s per sentinel, not that long).
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "after the hostile entries");
        await a.WaitForTextAsync("after the hostile entries", TimeSpan.FromMinutes(2));
        await b.WaitForTextAsync("after the hostile entries", TimeSpan.FromMinutes(2));
        await cluster.FlushAsync(a, b);

        foreach (var client in new[] { a, b })
        {
            var texts = client.Texts;
            foreach (var n in new[] { 0, 1 })
            {
                var expected = Enumerable.Range(1, LegitimatePerNode).Select(i => $"n{n}-{i}").ToArray();
                Assert.Equal(expected, texts.Where(t => t.StartsWith($"n{n}-", StringComparison.Ordinal)).ToArray());
            }

            Assert.Equal(2 * LegitimatePerNode + 1, texts.Count);
        }

        // Each node reads every hostile entry: 10,000 garbage + 2 huge malformed entries, the forgery ahead, 10 unknown-hub packets.
        await Eventually.TrueAsync(() => malformed.Total >= 2 * 10_002, $"malformed counted by both nodes (saw {malformed.Total})");
        Assert.Equal(2 * 10_002, malformed.Total);
        await Eventually.TrueAsync(() => forged.Total >= 1 && unknownHub.Total >= 20, $"forged {forged.Total}, unknown hub {unknownHub.Total}");

        Assert.Equal(2, forged.Total);
        Assert.Equal(20, unknownHub.Total);
        Assert.True(duplicates.Total >= 1, "the replayed sequence was dropped as a duplicate");
        output.WriteLine($"malformed {malformed.Total}, forged {forged.Total}, duplicates {duplicates.Total}, unknown hub {unknownHub.Total}");
    }

    private static Internal.StreamEntry Packet(string node, long sequence, string hub, string text) => new()
    {
        Kind = EntryKind.All,
        Node = node,
        Sequence = sequence,
        Hub = hub,
        Messages = [new SerializedMessage("json", Encoding.UTF8.GetBytes($"{{\"type\":1,\"target\":\"{TestClient.SendMethod}\",\"arguments\":[\"{text}\"]}}\u001e"))],
    };
}
