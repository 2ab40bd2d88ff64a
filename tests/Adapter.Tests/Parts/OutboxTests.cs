using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using SignalR.RedisStreams.Internal;
using IDatabase = StackExchange.Redis.IDatabase;

namespace SignalR.RedisStreams.Tests.Parts;

/// <summary>Outbox order, back-pressure and the publish timeout, without Redis: nothing here ever takes
/// a packet to Redis (the publisher's loop is not running), which is exactly a Redis that cannot be reached.</summary>
public sealed class OutboxTests
{
    [Fact]
    public async Task Packets_are_taken_in_the_order_they_were_added()
    {
        var outbox = new Outbox(capacity: 10, TimeSpan.FromSeconds(30), _ => { });
        var items = Enumerable.Range(0, 5).Select(_ => Item()).ToArray();
        foreach (var item in items)
        {
            await outbox.AddAsync(item, CancellationToken.None);
        }

        var batch = new List<OutboxItem>();
        outbox.TakeBatch(batch, max: 3);
        outbox.TakeBatch(batch, max: 10);

        Assert.Equal(items, batch);
        Assert.Equal(0, outbox.Depth);
    }

    [Fact]
    public async Task A_packet_whose_sender_gave_up_is_dropped_and_never_numbered()
    {
        var outbox = new Outbox(capacity: 10, TimeSpan.FromSeconds(30), _ => { });
        var (first, abandoned, third) = (Item(), Item(), Item());
        await outbox.AddAsync(first, CancellationToken.None);
        await outbox.AddAsync(abandoned, CancellationToken.None);
        await outbox.AddAsync(third, CancellationToken.None);
        Assert.True(abandoned.TryAbandon());

        var batch = new List<OutboxItem>();
        outbox.TakeBatch(batch, max: 10);

        Assert.Equal([first, third], batch);
        Assert.Equal(0, abandoned.Entry.Sequence);
        Assert.False(first.TryAbandon()); // taken: its sender can no longer give up on it
    }

    [Fact]
    public async Task A_full_outbox_makes_the_sender_wait_until_a_packet_is_taken()
    {
        var outbox = new Outbox(capacity: 1, TimeSpan.FromSeconds(30), _ => { });
        await outbox.AddAsync(Item(), CancellationToken.None);

        var waiting = outbox.AddAsync(Item(), CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        Assert.Equal(2, outbox.Depth);

        outbox.TakeBatch([], max: 1);
        await waiting.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(1, outbox.Depth);
    }

    [Fact]
    public async Task Packets_waiting_past_the_timeout_are_given_up_and_those_taken_in_time_are_not()
    {
        var expired = new List<OutboxItem>();
        var allExpired = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var outbox = new Outbox(capacity: 10, TimeSpan.FromMilliseconds(100), item =>
        {
            lock (expired)
            {
                expired.Add(item);
                if (expired.Count == 2)
                {
                    allExpired.TrySetResult();
                }
            }
        });
        var (taken, late1, late2) = (Item(), Item(), Item());
        await outbox.AddAsync(taken, CancellationToken.None);
        outbox.TakeBatch([], max: 1);
        await outbox.AddAsync(late1, CancellationToken.None);
        await outbox.AddAsync(late2, CancellationToken.None);

        await allExpired.Task.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal([late1, late2], expired);
        Assert.False(late1.TryTake()); // given up: the publisher will drop it unnumbered
        var batch = new List<OutboxItem>();
        outbox.TakeBatch(batch, max: 10);
        Assert.Empty(batch);
    }

    [Fact]
    public void Packets_taken_are_let_go_at_once_not_held_until_the_next_sweep()
    {
        // A long timeout: the sweeper, started by the first packet, does not run during the test.
        var outbox = new Outbox(capacity: 1000, TimeSpan.FromSeconds(30), _ => { });
        var taken = AddAndTake(outbox, 500);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        Assert.Equal(0, taken.Count(w => w.TryGetTarget(out _)));
    }

    [Fact]
    public async Task A_packet_left_waiting_by_a_full_batch_is_still_given_up_at_its_timeout()
    {
        var expired = new TaskCompletionSource<OutboxItem>(TaskCreationOptions.RunContinuationsAsynchronously);
        var outbox = new Outbox(capacity: 10, TimeSpan.FromMilliseconds(100), item => expired.TrySetResult(item));
        var (taken, late) = (Item(), Item());
        await outbox.AddAsync(taken, CancellationToken.None);
        await outbox.AddAsync(late, CancellationToken.None);
        // The batch takes the first; the publisher then drops it from the tracked packets and stops at the second.
        outbox.TakeBatch([], max: 1);

        Assert.Same(late, await expired.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(late.TryTake());
        Assert.False(taken.TryAbandon());
    }

    // Not inlined: the items must not stay alive in the test's own frame.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static List<WeakReference<OutboxItem>> AddAndTake(Outbox outbox, int count)
    {
        var weak = new List<WeakReference<OutboxItem>>();
        for (var i = 0; i < count; i++)
        {
            var item = Item();
            Assert.True(outbox.TryAdd(item));
            weak.Add(new WeakReference<OutboxItem>(item));
        }
        var batch = new List<OutboxItem>();
        outbox.TakeBatch(batch, max: count);
        Assert.Equal(count, batch.Count);
        foreach (var item in batch)
        {
            item.Complete();
        }
        return weak;
    }

    [Fact]
    public async Task A_send_Redis_never_takes_fails_after_PublishTimeout_and_is_never_published()
    {
        var publisher = Publisher(capacity: 10, TimeSpan.FromMilliseconds(200));

        var ex = await Assert.ThrowsAsync<RedisStreamsPublishException>(
            () => publisher.PublishAsync(Entry(), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));

        Assert.Contains("RedisStreamsOptions.PublishTimeout", ex.Message, StringComparison.Ordinal);
        Assert.Equal(1, publisher.OutboxDepth); // still queued, but abandoned: the loop will drop it unnumbered
    }

    [Fact]
    public async Task A_send_into_an_outbox_that_stays_full_fails_after_PublishTimeout()
    {
        var publisher = Publisher(capacity: 1, TimeSpan.FromMilliseconds(200));
        var first = publisher.PublishAsync(Entry(), CancellationToken.None);

        var ex = await Assert.ThrowsAsync<RedisStreamsPublishException>(
            () => publisher.PublishAsync(Entry(), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));

        Assert.Contains("outbox stayed full", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<RedisStreamsPublishException>(() => first.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task A_send_cancelled_by_its_caller_throws_OperationCanceledException_not_a_publish_failure()
    {
        var publisher = Publisher(capacity: 10, TimeSpan.FromSeconds(30));
        using var cancel = new CancellationTokenSource();

        var send = publisher.PublishAsync(Entry(), cancel.Token);
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task After_the_outbox_closes_a_send_fails_at_once_and_queued_ones_fail_when_the_node_stops()
    {
        var publisher = Publisher(capacity: 10, TimeSpan.FromSeconds(30));
        var queued = publisher.PublishAsync(Entry(), CancellationToken.None);

        publisher.CloseOutbox();
        var late = await Assert.ThrowsAsync<RedisStreamsPublishException>(() => publisher.PublishAsync(Entry(), CancellationToken.None));
        publisher.FailRemaining();

        Assert.Contains("shutting down", late.Message, StringComparison.Ordinal);
        var ex = await Assert.ThrowsAsync<RedisStreamsPublishException>(() => queued.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("shutting down", ex.Message, StringComparison.Ordinal);
    }

    private static OutboxItem Item() => new(Entry(), activity: null);

    private static StreamEntry Entry() => new() { Kind = EntryKind.All, Node = "n", Hub = "h" };

    private static StreamPublisher Publisher(int capacity, TimeSpan publishTimeout)
    {
        var options = new RedisStreamsOptions { OutboxCapacity = capacity, PublishTimeout = publishTimeout };
        var keys = new RedisStreamsKeys("", "s");
        var meters = new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        var instruments = new BackplaneInstruments(meters, "n", () => 0, () => 0, () => 0);
        IDatabase NoRedis() => throw new InvalidOperationException("This test has no Redis.");
        var epoch = new RedisEpoch(keys, NoRedis, (_, _) => { });
        var neverPositioned = new TaskCompletionSource().Task;
        var registry = new ConnectionRegistry(keys, "n", () => ValueTask.FromResult(NoRedis()), _ => false, NullLogger.Instance);
        return new StreamPublisher(
            new NodeContext("n", options, keys, NullLogger.Instance, instruments), epoch, NoRedis, registry, neverPositioned, CancellationToken.None);
    }
}
