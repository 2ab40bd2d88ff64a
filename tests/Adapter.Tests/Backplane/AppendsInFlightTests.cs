using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>The publisher sends the next batch's append before the answer to the one in flight. When the one in flight
/// stops short (Redis lost entries of one of its channels), the one behind it must not go in before it: Redis refuses
/// it whole, and it goes again after the repair, so every packet still arrives once, in send order.</summary>
public sealed class AppendsInFlightTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    [Fact]
    public async Task A_batch_sent_ahead_of_one_that_stops_short_is_refused_and_sent_again_after_the_repair_in_order()
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output);
        await using var receiver = await cluster.ConnectAsync(1);
        var hub = cluster.Hub(0);
        var sender = cluster.Nodes[0].Services.GetRequiredService<BackplaneNode>();
        var inboxOwner = cluster.Nodes[1].Services.GetRequiredService<BackplaneNode>().NodeId;
        var expected = new List<string>();

        // Broadcasts (the shared stream) and direct sends to the receiver (node 1's inbox), one at a time.
        for (var i = 1; i <= 6; i++)
        {
            var text = $"a{i}";
            await (i % 2 == 0 ? hub.Clients.Client(receiver.ConnectionId) : hub.Clients.All).SendAsync(TestClient.SendMethod, text);
            expected.Add(text);
        }
        await receiver.WaitForTextAsync("a6");

        // Redis loses the sender's last two packets in node 1's inbox (as a replica promoted without them would): its
        // number there falls back by 2. The sender's replay window still has them.
        var inboxSequences = (string)sender.Keys.InboxSequences(inboxOwner)!;
        var last = long.Parse((await redis.Server.ExecuteAsync("HGET", inboxSequences, sender.NodeId)).ToString()!, System.Globalization.CultureInfo.InvariantCulture);
        await redis.Server.ExecuteAsync("HSET", inboxSequences, sender.NodeId, (last - 2).ToString(System.Globalization.CultureInfo.InvariantCulture));

        // Redis paused with one broadcast in flight: 600 sends (every third one direct) queue behind it. When Redis
        // answers, the publisher sends batches two at a time; the first holding a direct send stops short at it.
        redis.Server.Pause();
        Task[] sends;
        try
        {
            var first = hub.Clients.All.SendAsync(TestClient.SendMethod, "b0");
            expected.Add("b0");
            await Eventually.TrueAsync(() => sender.Publisher.OutboxDepth == 0, "the publisher takes the first send");
            sends =
            [
                first,
                .. Enumerable.Range(1, 600).Select(i =>
                {
                    var text = $"b{i}";
                    expected.Add(text);
                    return (i % 3 == 0 ? hub.Clients.Client(receiver.ConnectionId) : hub.Clients.All).SendAsync(TestClient.SendMethod, text);
                }),
            ];
        }
        finally
        {
            redis.Server.Resume();
        }

        await Task.WhenAll(sends).WaitAsync(TimeSpan.FromSeconds(60));
        await receiver.WaitForTextAsync("b600", TimeSpan.FromSeconds(30));
        await cluster.FlushAsync(receiver);

        Assert.True(sender.Publisher.SentAhead > 0, "batches were sent ahead of the answer to the one before");
        Assert.True(sender.Publisher.AheadRefused > 0, "Redis refused the batch sent ahead of the one that stopped short");
        Assert.Equal(expected, receiver.Texts);
        output.WriteLine($"sent ahead {sender.Publisher.SentAhead}, refused {sender.Publisher.AheadRefused}");
    }
}
