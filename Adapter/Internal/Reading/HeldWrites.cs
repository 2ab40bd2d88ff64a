namespace SignalR.RedisStreams.Internal;

/// <summary>
/// When the reader writes what it read to connections. Each XREAD reply's writes are gathered per connection
/// (<see cref="CoalescedWrites"/>); under load the writes of several replies are held and go out together: while
/// replies come back busy (at least <see cref="BusyReplyPackets"/> packets), the reader reads the next reply before
/// writing, until <see cref="MaxPackets"/> packets are held or <see cref="MaxTime"/> passed since the first. A connection
/// then gets more messages per write, so its transport and its client wake up less often for the same messages: a
/// direct send reaches one connection of a node's hundreds, and one reply alone gives each about one message.
/// <para>Nothing is held when the node is not busy: a reply below <see cref="BusyReplyPackets"/>, an empty read (the
/// reader is about to wait for new entries), an error and stopping all write out at once, so an idle node adds no
/// latency. A read that is slow to answer (Redis stalled or away) does not keep what was read before it: the writes go
/// out when <see cref="MaxReadWait"/> is up, while the read goes on.</para>
/// Used by one reader loop only (not thread-safe).
/// </summary>
internal sealed class HeldWrites(CoalescedWrites writes, TimeProvider time)
{
    /// <summary>A reply with at least this many packets means the node is busy.</summary>
    public const int BusyReplyPackets = 32;

    /// <summary>Most packets whose writes are held.</summary>
    public const int MaxPackets = 1000;

    /// <summary>No further reply is read for held writes once this much time passed since the first of them.</summary>
    public static readonly TimeSpan MaxTime = TimeSpan.FromMilliseconds(2);

    /// <summary>The longest held writes wait for the read in flight. Under load a read's round trip often takes longer
    /// than <see cref="MaxTime"/> (the thread pool is busy), and writing out then, before its reply, lost most of the
    /// gain (cells benchmark, direct sends, 3 invocations each: 3.9 KB allocated per send and 0.86–0.90× Microsoft's
    /// throughput with a 2 ms bound, 3.2–3.3 KB and 1.01–1.11× with 20 ms); a stalled Redis takes far longer.</summary>
    public static readonly TimeSpan MaxReadWait = TimeSpan.FromMilliseconds(20);

    /// <summary>After writing out busy replies, at most this many trips to the back of the thread pool's queue (see
    /// <see cref="LetWritesGoOutAsync"/>). Measured with the cells benchmark (3 servers × 100 clients): 4 to 16 all did
    /// about as well; 8 is in the middle.</summary>
    private const int MaxYieldsAfterBusyFlush = 8;

    private long _since;

    /// <summary>Where the entries of the reply being handled put their writes.</summary>
    public CoalescedWrites Writes => writes;

    /// <summary>Packets handled whose writes have not gone out yet.</summary>
    public int Packets { get; private set; }

    /// <summary>A reply is about to be handled.</summary>
    public void BeginReply()
    {
        if (Packets == 0)
        {
            _since = time.GetTimestamp();
        }
    }

    /// <summary>The reply of <paramref name="replyPackets"/> packets was handled (<paramref name="handled"/> false: its
    /// handling failed): its writes are held, or everything held goes out now. True when it went out.</summary>
    public async ValueTask<bool> EndReplyAsync(int replyPackets, bool handled)
    {
        Packets += replyPackets;
        if (handled && replyPackets >= BusyReplyPackets && Packets < MaxPackets && time.GetElapsedTime(_since) < MaxTime)
        {
            return false;
        }
        var busy = Packets >= BusyReplyPackets;
        await FlushAsync();
        if (busy && handled)
        {
            await LetWritesGoOutAsync();
        }
        return true;
    }

    /// <summary>Writes out everything held.</summary>
    public ValueTask FlushAsync()
    {
        Packets = 0;
        return writes.FlushAsync();
    }

    /// <summary>Awaits the reader's next read. With writes held, at most until <see cref="MaxReadWait"/> since the
    /// first of them: then they go out, and the read goes on.</summary>
    public Task<T> WhileReadingAsync<T>(Task<T> read, CancellationToken stopping)
        => Packets > 0 && !read.IsCompleted ? HoldWhileReadingAsync(read, stopping) : read;

    private async Task<T> HoldWhileReadingAsync<T>(Task<T> read, CancellationToken stopping)
    {
        var left = MaxReadWait - time.GetElapsedTime(_since);
        if (left > TimeSpan.Zero)
        {
            try
            {
                // The wait's timer goes away with the read's answer (the usual case), rather than firing later.
                return await read.WaitAsync(left, time, stopping);
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
            {
                // The bound is up (or the node is stopping) with the read still out, or the read itself failed so: the
                // writes go out now either way, and the read's own outcome follows.
            }
        }
        await FlushAsync();
        return await read;
    }

    /// <summary>After writing out busy replies: goes to the back of the thread pool's queue while it holds work, at most
    /// <see cref="MaxYieldsAfterBusyFlush"/> times. What waits there is mostly what the writes woke (each connection's
    /// transport sending what it was given), so those sends go out first, and the next reply, read after them, holds
    /// more packets. Under load that is the same work in fewer, larger pieces.</summary>
    private static async ValueTask LetWritesGoOutAsync()
    {
        for (var i = 0; i < MaxYieldsAfterBusyFlush && ThreadPool.PendingWorkItemCount > 0; i++)
        {
            await Task.Yield();
        }
    }
}
