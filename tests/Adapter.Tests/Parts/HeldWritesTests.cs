using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.Logging.Abstractions;
using SignalR.RedisStreams.Internal;
using static SignalR.RedisStreams.Tests.Parts.CoalescedWritesTests;

namespace SignalR.RedisStreams.Tests.Parts;

/// <summary>When the reader writes out what it read: at once when the node is not busy; under load, the writes of
/// several replies together, within bounds of packets and time, and never kept waiting behind a slow read. SignalR's
/// own <see cref="Microsoft.AspNetCore.SignalR.HubConnectionContext"/> over a real pipe, the transport's writes
/// counted; the clock is one the test moves.</summary>
public sealed class HeldWritesTests
{
    [Fact]
    public async Task A_reply_that_is_not_busy_goes_out_at_once()
    {
        var connection = new Connection(new JsonHubProtocol());
        var held = new HeldWrites(new CoalescedWrites(NullLogger.Instance), new ManualClock());

        Assert.True(await ReplyAsync(held, connection, HeldWrites.BusyReplyPackets - 1, handled: true, 1));

        Assert.Equal(0, held.Packets);
        Assert.Equal(1, connection.Writes);
        Assert.Equal("1", await connection.ReceivedAsync(1));
    }

    [Fact]
    public async Task Busy_replies_are_held_and_go_out_together_once_the_packet_bound_is_reached()
    {
        var connection = new Connection(new JsonHubProtocol());
        var held = new HeldWrites(new CoalescedWrites(NullLogger.Instance), new ManualClock());
        var replies = (HeldWrites.MaxPackets + HeldWrites.BusyReplyPackets - 1) / HeldWrites.BusyReplyPackets; // the last reaches the bound

        for (var r = 1; r <= replies; r++)
        {
            held.BeginReply();
            held.Writes.Add(connection.Context, Message(r));
            var wentOut = await held.EndReplyAsync(HeldWrites.BusyReplyPackets, handled: true);
            Assert.Equal(r * HeldWrites.BusyReplyPackets >= HeldWrites.MaxPackets, wentOut);
            if (!wentOut)
            {
                Assert.Equal(0, connection.Writes);
            }
        }

        Assert.Equal(1, connection.Writes); // every reply's message in one write, in order
        Assert.Equal(string.Join(',', Enumerable.Range(1, replies)), await connection.ReceivedAsync(replies));
    }

    [Fact]
    public async Task A_reply_that_is_not_busy_after_busy_ones_writes_out_everything_held_in_order()
    {
        var connection = new Connection(new JsonHubProtocol());
        var held = new HeldWrites(new CoalescedWrites(NullLogger.Instance), new ManualClock());

        Assert.False(await ReplyAsync(held, connection, HeldWrites.BusyReplyPackets, handled: true, 1, 2));
        Assert.True(await ReplyAsync(held, connection, 1, handled: true, 3));

        Assert.Equal(1, connection.Writes);
        Assert.Equal("1,2,3", await connection.ReceivedAsync(3));
    }

    [Fact]
    public async Task Writes_are_held_no_longer_than_the_time_bound()
    {
        var connection = new Connection(new JsonHubProtocol());
        var clock = new ManualClock();
        var held = new HeldWrites(new CoalescedWrites(NullLogger.Instance), clock);

        Assert.False(await ReplyAsync(held, connection, HeldWrites.BusyReplyPackets, handled: true, 1));
        clock.Advance(HeldWrites.MaxTime);
        Assert.True(await ReplyAsync(held, connection, HeldWrites.BusyReplyPackets, handled: true, 2)); // the time counts from the first reply held, not this one

        Assert.Equal("1,2", await connection.ReceivedAsync(2));
    }

    [Fact]
    public async Task A_reply_whose_handling_failed_goes_out_at_once_with_what_was_held()
    {
        var connection = new Connection(new JsonHubProtocol());
        var held = new HeldWrites(new CoalescedWrites(NullLogger.Instance), new ManualClock());

        Assert.False(await ReplyAsync(held, connection, HeldWrites.BusyReplyPackets, handled: true, 1));
        Assert.True(await ReplyAsync(held, connection, HeldWrites.BusyReplyPackets, handled: false, 2));

        Assert.Equal("1,2", await connection.ReceivedAsync(2));
    }

    [Fact]
    public async Task A_read_that_answers_in_time_keeps_the_writes_held()
    {
        var connection = new Connection(new JsonHubProtocol());
        var held = new HeldWrites(new CoalescedWrites(NullLogger.Instance), new ManualClock());
        Assert.False(await ReplyAsync(held, connection, HeldWrites.BusyReplyPackets, handled: true, 1));

        Assert.Equal(42, await held.WhileReadingAsync(Task.FromResult(42), CancellationToken.None));

        Assert.Equal(0, connection.Writes);
        Assert.Equal(HeldWrites.BusyReplyPackets, held.Packets);
    }

    [Fact]
    public async Task A_read_that_does_not_answer_in_time_does_not_keep_what_was_read_before_it()
    {
        var connection = new Connection(new JsonHubProtocol());
        var clock = new ManualClock();
        var held = new HeldWrites(new CoalescedWrites(NullLogger.Instance), clock);
        Assert.False(await ReplyAsync(held, connection, HeldWrites.BusyReplyPackets, handled: true, 1, 2));

        // The read hangs (Redis paused, say): the held writes go out when its time bound is up (the held clock says
        // a few ms of it are left; the wait for them runs on real time), while the read is still pending.
        clock.Advance(HeldWrites.MaxReadWait - TimeSpan.FromMilliseconds(5));
        var read = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = held.WhileReadingAsync(read.Task, CancellationToken.None);

        Assert.Equal("1,2", await connection.ReceivedAsync(2));
        Assert.False(reading.IsCompleted);
        Assert.Equal(0, held.Packets);
        read.SetResult(7);
        Assert.Equal(7, await reading);
    }

    [Fact]
    public async Task A_read_that_fails_while_writes_are_held_still_lets_them_out_and_throws()
    {
        var connection = new Connection(new JsonHubProtocol());
        var clock = new ManualClock();
        var held = new HeldWrites(new CoalescedWrites(NullLogger.Instance), clock);
        Assert.False(await ReplyAsync(held, connection, HeldWrites.BusyReplyPackets, handled: true, 1));
        clock.Advance(HeldWrites.MaxReadWait);

        var read = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = held.WhileReadingAsync(read.Task, CancellationToken.None);
        Assert.Equal("1", await connection.ReceivedAsync(1));
        read.SetException(new InvalidOperationException("read failed"));

        await Assert.ThrowsAsync<InvalidOperationException>(() => reading);
    }

    /// <summary>One reply handled: its messages gathered for <paramref name="connection"/>, then the hold decides;
    /// true when everything held went out.</summary>
    private static ValueTask<bool> ReplyAsync(HeldWrites held, Connection connection, int packets, bool handled, params int[] messages)
    {
        held.BeginReply();
        foreach (var message in messages)
        {
            held.Writes.Add(connection.Context, Message(message));
        }
        return held.EndReplyAsync(packets, handled);
    }

    /// <summary>A clock that moves only when told; its timers (for waits) still run on real time.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks = TimeSpan.TicksPerDay;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Interlocked.Read(ref _ticks);

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
    }
}
