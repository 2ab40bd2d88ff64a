using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>Redis dead under a load larger than the outbox (<c>OutboxCapacity</c> 500, 3,000 sends): senders past the
/// capacity wait (back-pressure) and then fail with <see cref="RedisStreamsPublishException"/>; what waited in the
/// outbox when Redis came back drains in order; no failed send is ever delivered. (The 10-minute version
/// with a memory figure is <c>benchmarks -- outage-memory</c>.)</summary>
public sealed class BoundedOutboxTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private const int Capacity = 500;

    // Most packets the publisher holds once taken from the outbox: a batch of up to 256, and one sent ahead of its answer.
    private const int HeldByPublisher = 2 * 256;
    // Long enough for redis-server to restart and the client to reconnect on a busy machine (phase 1).
    private static readonly TimeSpan PublishTimeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Redis_dead_under_load_keeps_the_outbox_bounded_fails_the_overflow_and_drains_the_rest_in_order()
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output, o =>
        {
            o.OutboxCapacity = Capacity;
            o.PublishTimeout = PublishTimeout;
        });
        await using var receiver = await cluster.ConnectAsync(1);
        var node = cluster.Nodes[0].Services.GetRequiredService<BackplaneNode>();
        var publisher = node.Publisher;
        // This node's retries only: tests of other classes run at the same time in this process, some with outages.
        using var retries = new CounterTotal("signalr.redis_streams.publish_retries", node.NodeId);
        var hub = cluster.Hub(0);

        // 1. Redis dies with 400 sends (fewer than the capacity) waiting; it comes back: they all arrive, in order.
        await redis.Server.KillAsync();
        var drained = Enumerable.Range(1, 400).Select(i => hub.Clients.All.SendAsync(TestClient.SendMethod, $"d{i}")).ToArray();
        await Eventually.TrueAsync(() => retries.Total > 0, "the publisher finds Redis gone and retries");
        Assert.All(drained, t => Assert.False(t.IsCompleted));
        await redis.Server.RestartAsync();
        await Task.WhenAll(drained).WaitAsync(TimeSpan.FromSeconds(60));
        await receiver.WaitForTextAsync("d400", TimeSpan.FromSeconds(30));
        Assert.Equal(Enumerable.Range(1, 400).Select(i => $"d{i}"), receiver.Texts);

        // 2. Redis dies again, under 3,000 sends: the outbox fills to its capacity and no further; the rest wait.
        await redis.Server.KillAsync();
        var overflow = Enumerable.Range(1, 3_000).Select(i => hub.Clients.All.SendAsync(TestClient.SendMethod, $"o{i}")).ToArray();
        // outbox.depth counts the packets queued and the sends waiting for room: all 3,000 but what the publisher took,
        // its batch and, when Redis died under it, the batch it sent ahead of that one's answer (at most 256 each).
        await Eventually.TrueAsync(() => publisher.OutboxDepth >= 3_000 - HeldByPublisher, $"the sends queue up or wait (depth {publisher.OutboxDepth})");
        var waiting = overflow.Count(t => !t.IsCompleted);
        Assert.True(waiting > 3_000 - Capacity, $"{waiting} sends wait: back-pressure");

        // After PublishTimeout they fail with RedisStreamsPublishException (all but what the publisher took, which it
        // retries until Redis answers).
        await Eventually.TrueAsync(() => overflow.Count(t => t.IsFaulted) >= 3_000 - HeldByPublisher, $"sends fail after PublishTimeout ({overflow.Count(t => t.IsFaulted)} so far)", TimeSpan.FromSeconds(90));
        Assert.All(overflow.Where(t => t.IsFaulted), t => Assert.IsType<RedisStreamsPublishException>(t.Exception!.InnerException));

        // 3. Redis returns: the sends still held complete; exactly the completed ones arrive, in order; no failed one ever does.
        await redis.Server.RestartAsync();
        await Task.WhenAll(overflow.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default))).WaitAsync(TimeSpan.FromSeconds(60));
        var completed = Enumerable.Range(1, 3_000).Where(i => overflow[i - 1].IsCompletedSuccessfully).Select(i => $"o{i}").ToArray();
        await cluster.FlushAsync(receiver);
        Assert.Equal(completed, receiver.Texts.Where(t => t.StartsWith('o')).ToArray());
        output.WriteLine($"{waiting} sends waited; {overflow.Count(t => t.IsFaulted)} failed; {completed.Length} completed after Redis returned");
    }
}
