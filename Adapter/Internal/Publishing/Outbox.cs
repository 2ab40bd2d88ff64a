using System.Diagnostics;
using System.Threading.Channels;

namespace SignalR.RedisStreams.Internal;

/// <summary>The ordered queue of packets waiting to be appended. Bounded (<c>OutboxCapacity</c>: a full outbox makes
/// senders wait); a packet gets its sequence number only when the publisher takes it, so a packet whose sender gave up
/// (<c>PublishTimeout</c>) leaves no hole in the sender's numbering.</summary>
internal sealed class Outbox
{
    private readonly Channel<OutboxItem> _channel;
    private int _depth;
    private long _lastSequence;

    public Outbox(int capacity)
    {
        _channel = Channel.CreateBounded<OutboxItem>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    /// <summary>Packets waiting.</summary>
    public int Depth => Volatile.Read(ref _depth);

    /// <summary>Completes when the outbox was closed and emptied.</summary>
    public Task Completion => _channel.Reader.Completion;

    /// <summary>Queues a packet; waits while the outbox is full. Throws <see cref="ChannelClosedException"/> once the
    /// outbox is closed, and <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> fires first.</summary>
    public async ValueTask AddAsync(OutboxItem item, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _depth);
        try
        {
            if (!_channel.Writer.TryWrite(item))
            {
                item.Activity?.AddEvent(new ActivityEvent("outbox.full"));
                await _channel.Writer.WriteAsync(item, cancellationToken);
            }
        }
        catch
        {
            Interlocked.Decrement(ref _depth);
            throw;
        }
    }

    /// <summary>Waits until a packet can be taken; false once the outbox is closed and empty.</summary>
    public ValueTask<bool> WaitToTakeAsync(CancellationToken cancellationToken) => _channel.Reader.WaitToReadAsync(cancellationToken);

    /// <summary>Takes, in order, up to <paramref name="max"/> packets whose senders still wait, and numbers them.
    /// Packets whose senders gave up are dropped without a number.</summary>
    public void TakeBatch(List<OutboxItem> batch, int max)
    {
        while (batch.Count < max && _channel.Reader.TryRead(out var item))
        {
            Interlocked.Decrement(ref _depth);
            if (item.TryTake())
            {
                item.Entry.Sequence = Interlocked.Increment(ref _lastSequence);
                batch.Add(item);
            }
        }
    }

    /// <summary>No more packets are accepted; those queued can still be taken.</summary>
    public void Close() => _channel.Writer.TryComplete();

    /// <summary>Fails every packet still queued (the node stopped before it could publish them).</summary>
    public void FailRemaining(Exception exception)
    {
        while (_channel.Reader.TryRead(out var item))
        {
            Interlocked.Decrement(ref _depth);
            if (item.TryTake())
            {
                item.Fail(exception);
            }
        }
    }
}
