using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;

namespace SignalR.RedisStreams.Internal;

/// <summary>The ordered queue of packets waiting to be appended. Bounded (<c>OutboxCapacity</c>: a full outbox makes
/// senders wait). Packets are numbered by the publisher, per channel, only once taken, so a packet given up on leaves
/// no hole in the sender's numbering. A packet not taken within <c>PublishTimeout</c> is given up by one sweeper that
/// looks at the oldest waiting packets only (no timer per packet).</summary>
/// <remarks>The packets are also tracked in the order they arrived, for the sweeper. That list lets go of a packet as
/// soon as it is taken (the publisher drops the taken ones at its head after each batch): held until the next sweep, a
/// busy node's packets outlived a few collections of the GC's youngest generation and were copied into the older ones
/// (tens of thousands at a time, with their payloads), which lengthened every collection. The list is never peeked:
/// <see cref="ConcurrentQueue{T}.TryPeek"/> makes the queue keep every item dequeued from that segment on.</remarks>
internal sealed class Outbox
{
    private readonly Channel<OutboxItem> _channel;
    private readonly TimeSpan _timeout;
    private readonly TimeSpan _sweepInterval;
    private readonly Action<OutboxItem> _expired;
    private readonly ConcurrentQueue<OutboxItem> _byAge = new();
    // Whoever takes packets off _byAge (the publisher's prune, the sweeper) holds this; senders add without it.
    private readonly Lock _byAgeLock = new();
    // The oldest tracked packet still waiting, once taken off _byAge (instead of a peek): under _byAgeLock.
    private OutboxItem? _oldest;
    private int _depth;
    private int _sweeping;

    /// <param name="capacity">Most packets waiting.</param>
    /// <param name="timeout">How long a packet may wait before it is given up.</param>
    /// <param name="expired">Called for a packet given up (already abandoned): fail it.</param>
    public Outbox(int capacity, TimeSpan timeout, Action<OutboxItem> expired)
    {
        _channel = Channel.CreateBounded<OutboxItem>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _timeout = timeout;
        _expired = expired;
        _sweepInterval = TimeSpan.FromMilliseconds(Math.Clamp(timeout.TotalMilliseconds / 4, 10, 250));
    }

    /// <summary>Packets waiting.</summary>
    public int Depth => Volatile.Read(ref _depth);

    /// <summary>Completes when the outbox was closed and emptied.</summary>
    public Task Completion => _channel.Reader.Completion;

    /// <summary>Queues a packet when there is room; false when the outbox is full (or closed).</summary>
    public bool TryAdd(OutboxItem item)
    {
        if (!_channel.Writer.TryWrite(item))
        {
            return false;
        }
        Interlocked.Increment(ref _depth);
        Track(item);
        return true;
    }

    /// <summary>Queues a packet, waiting while the outbox is full. Throws <see cref="ChannelClosedException"/> once the
    /// outbox is closed, and <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> fires first.</summary>
    public async ValueTask AddAsync(OutboxItem item, CancellationToken cancellationToken)
    {
        if (TryAdd(item))
        {
            return;
        }
        item.Activity?.AddEvent(new ActivityEvent("outbox.full"));
        Interlocked.Increment(ref _depth);
        try
        {
            await _channel.Writer.WriteAsync(item, cancellationToken);
        }
        catch
        {
            Interlocked.Decrement(ref _depth);
            throw;
        }
        Track(item);
    }

    /// <summary>Waits until a packet can be taken; false once the outbox is closed and empty.</summary>
    public ValueTask<bool> WaitToTakeAsync(CancellationToken cancellationToken) => _channel.Reader.WaitToReadAsync(cancellationToken);

    /// <summary>Takes, in order, up to <paramref name="max"/> packets whose senders still wait. Packets given up are
    /// dropped.</summary>
    public void TakeBatch(List<OutboxItem> batch, int max)
    {
        var took = false;
        while (batch.Count < max && _channel.Reader.TryRead(out var item))
        {
            Interlocked.Decrement(ref _depth);
            took = true;
            if (item.TryTake())
            {
                batch.Add(item);
            }
        }
        if (took)
        {
            lock (_byAgeLock)
            {
                OldestWaiting();
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

    private void Track(OutboxItem item)
    {
        _byAge.Enqueue(item);
        if (Interlocked.CompareExchange(ref _sweeping, 1, 0) == 0)
        {
            // Started by a sender, but it sweeps for every sender after it.
            _ = Background.Start(SweepAsync);
        }
    }

    /// <summary>Drops the packets no longer waiting (taken or given up) from the oldest end of the tracked ones, and
    /// returns the oldest still waiting (kept in <see cref="_oldest"/>), if any. Under <see cref="_byAgeLock"/>.</summary>
    private OutboxItem? OldestWaiting()
    {
        while (true)
        {
            var head = _oldest;
            _oldest = null;
            if (head is null && !_byAge.TryDequeue(out head))
            {
                return null;
            }
            if (head.IsWaiting)
            {
                _oldest = head;
                return head;
            }
        }
    }

    /// <summary>No packet is tracked any more. Under <see cref="_byAgeLock"/>.</summary>
    private bool NothingTracked => _oldest is null && _byAge.IsEmpty;

    /// <summary>Runs while packets are tracked: every interval, gives up the packets waiting longer than the timeout.
    /// Packets are tracked in the order they arrived, so it stops at the first one still in time.</summary>
    private async Task SweepAsync()
    {
        var expired = new List<OutboxItem>();
        while (true)
        {
            await Task.Delay(_sweepInterval);
            var now = Stopwatch.GetTimestamp();
            bool idle;
            lock (_byAgeLock)
            {
                while (OldestWaiting() is { } oldest && Stopwatch.GetElapsedTime(oldest.EnqueuedAt, now) >= _timeout)
                {
                    _oldest = null;
                    if (oldest.TryAbandon())
                    {
                        expired.Add(oldest);
                    }
                }
                idle = NothingTracked;
            }
            foreach (var item in expired)
            {
                _expired(item);
            }
            expired.Clear();
            if (idle)
            {
                Volatile.Write(ref _sweeping, 0);
                // A packet tracked between the check and the reset finds the sweeper gone: take the job back. (Under
                // the lock: the publisher may have moved that packet from the queue to _oldest meanwhile.)
                bool stillIdle;
                lock (_byAgeLock)
                {
                    stillIdle = NothingTracked;
                }
                if (stillIdle || Interlocked.CompareExchange(ref _sweeping, 1, 0) != 0)
                {
                    return;
                }
            }
        }
    }
}
