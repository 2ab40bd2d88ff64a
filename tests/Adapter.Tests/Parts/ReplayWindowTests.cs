using System.Diagnostics;
using SignalR.RedisStreams.Internal;

namespace SignalR.RedisStreams.Tests.Parts;

/// <summary>The replay window and the repair plan after Redis lost entries, without Redis.</summary>
public sealed class ReplayWindowTests
{
    private static readonly long Start = Stopwatch.GetTimestamp();

    [Fact]
    public void Everything_Redis_lost_inside_the_window_is_republished_in_order_without_forcing()
    {
        var window = Window(1, 2, 3, 4, 5);

        var plan = window.PlanRepair(last: 2, next: 6);

        Assert.Equal([3L, 4L, 5L], plan.Republish.Select(r => r.Entry.Sequence));
        Assert.All(plan.Republish, r => Assert.False(r.Force));
        Assert.False(plan.ForceNext);
        Assert.Equal(0, plan.Lost);
    }

    [Fact]
    public void Redis_restarted_empty_gets_the_whole_window_back()
    {
        var window = Window(1, 2, 3);

        var plan = window.PlanRepair(last: 0, next: 4);

        Assert.Equal([1L, 2L, 3L], plan.Republish.Select(r => r.Entry.Sequence));
        Assert.False(plan.ForceNext);
    }

    [Fact]
    public void Entries_older_than_the_window_are_lost_and_the_first_republished_one_is_forced_past_them()
    {
        var window = Window(6, 7, 8);

        var plan = window.PlanRepair(last: 3, next: 9);

        Assert.Equal([6L, 7L, 8L], plan.Republish.Select(r => r.Entry.Sequence));
        Assert.Equal([true, false, false], plan.Republish.Select(r => r.Force));
        Assert.Equal(2, plan.Lost); // 4 and 5
        Assert.False(plan.ForceNext);
    }

    [Fact]
    public void With_nothing_to_republish_the_next_entry_is_forced()
    {
        var window = new ReplayWindow(TimeSpan.FromSeconds(30), maxCount: 100);

        var plan = window.PlanRepair(last: 3, next: 9);

        Assert.Empty(plan.Republish);
        Assert.True(plan.ForceNext);
        Assert.Equal(5, plan.Lost);
    }

    [Fact]
    public void The_window_keeps_at_most_its_count()
    {
        var window = new ReplayWindow(TimeSpan.FromSeconds(30), maxCount: 2);
        for (var sequence = 1; sequence <= 5; sequence++)
        {
            window.Add(Entry(sequence, Start));
        }

        Assert.Equal(2, window.Count);
        Assert.Equal([4L, 5L], window.PlanRepair(0, 6).Republish.Select(r => r.Entry.Sequence));
    }

    [Fact]
    public void The_window_forgets_entries_older_than_its_time()
    {
        var window = new ReplayWindow(TimeSpan.FromSeconds(30), maxCount: 100);
        window.Add(Entry(1, Start));
        window.Add(Entry(2, Start + Ticks(TimeSpan.FromSeconds(10))));
        window.Add(Entry(3, Start + Ticks(TimeSpan.FromSeconds(31))));

        Assert.Equal(2, window.Count);
        Assert.Equal([2L, 3L], window.PlanRepair(0, 4).Republish.Select(r => r.Entry.Sequence));
    }

    [Fact]
    public void A_repair_of_several_channels_republishes_in_the_order_of_the_first_appends_and_forces_each_channel_on_its_own()
    {
        var window = new ReplayWindow(TimeSpan.FromSeconds(30), maxCount: 100);
        window.Add(Entry(1, Start));
        window.Add(Entry(1, Start, "b"));
        window.Add(Entry(2, Start));
        window.Add(Entry(2, Start, "b"));
        window.Add(Entry(5, Start, "c")); // c's 1..4 fell out of the window

        var plan = window.PlanRepair(new Dictionary<string, ChannelLoss>
        {
            [""] = new(Last: 0, Next: 3),
            ["b"] = new(Last: 1, Next: 3),
            ["c"] = new(Last: 0, Next: 7), // c's 6 is not in the window either
        });

        Assert.Equal([("", 1L), ("", 2L), ("b", 2L), ("c", 5L)], plan.Republish.Select(r => (r.Entry.Channel, r.Entry.Sequence)));
        Assert.Equal([false, false, false, true], plan.Republish.Select(r => r.Force));
        Assert.Equal(["c"], plan.ForceNextChannels);
        Assert.Equal(5, plan.Lost); // c's 1..4 and 6
    }

    [Fact]
    public void Packets_come_back_byte_for_byte_while_the_window_reuses_its_memory()
    {
        var window = new ReplayWindow(TimeSpan.FromSeconds(30), maxCount: 1000);
        // 20,000 packets of 1 to 6,000 bytes: small ones copied into the window's chunks (reused many times over),
        // large ones kept as sent.
        AddPackets(window, 1, 20_000);

        var plan = window.PlanRepair(last: 19_000, next: 20_001);

        Assert.Equal(1000, plan.Republish.Count);
        foreach (var (entry, _) in plan.Republish)
        {
            Assert.Equal(Packet(entry.Sequence), entry.Packet.ToArray());
        }
        // What 1,000 packets need (about 1.4 MB of small ones in 128 KB chunks), not what 20,000 did.
        Assert.InRange(window.ChunksInUse, 1, 16);
    }

    [Fact]
    public void A_repair_plan_keeps_its_bytes_when_the_window_moves_on()
    {
        var window = new ReplayWindow(TimeSpan.FromSeconds(30), maxCount: 100);
        AddPackets(window, 1, 100);
        var plan = window.PlanRepair(last: 0, next: 101);

        AddPackets(window, 101, 5_000);

        Assert.All(plan.Republish, r => Assert.Equal(Packet(r.Entry.Sequence), r.Entry.Packet.ToArray()));
    }

    [Fact]
    public void A_small_packet_is_copied_and_the_array_it_was_sent_in_is_not_kept()
    {
        var window = new ReplayWindow(TimeSpan.FromSeconds(30), maxCount: 100);
        var sent = AddSentInItsOwnArray(window);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        Assert.False(sent.TryGetTarget(out _));
        Assert.Equal(Packet(1), window.PlanRepair(last: 0, next: 2).Republish.Single().Entry.Packet.ToArray());
    }

    // Not inlined: the sent array must not stay alive in the test's own frame.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static WeakReference<byte[]> AddSentInItsOwnArray(ReplayWindow window)
    {
        var entryBytes = new byte[4000];
        Packet(1).CopyTo(entryBytes, 100);
        window.Add(new PublishedEntry(1, entryBytes.AsMemory(100, Packet(1).Length), Start, default));
        return new WeakReference<byte[]>(entryBytes);
    }

    /// <summary>Adds packets <paramref name="first"/> to <paramref name="last"/> (<see cref="Packet"/>) to the window.</summary>
    private static void AddPackets(ReplayWindow window, long first, long last)
    {
        for (var sequence = first; sequence <= last; sequence++)
        {
            window.Add(new PublishedEntry(sequence, Packet(sequence), Start, default));
        }
    }

    /// <summary>Packet <paramref name="sequence"/>'s bytes: 1 to 6,000 of them, each depending on the sequence.</summary>
    private static byte[] Packet(long sequence)
    {
        var bytes = new byte[1 + (int)(sequence * 7919 % 6000)];
        for (var i = 0; i < bytes.Length; i++)
        {
            bytes[i] = (byte)(sequence + i);
        }
        return bytes;
    }

    private static ReplayWindow Window(params long[] sequences)
    {
        var window = new ReplayWindow(TimeSpan.FromSeconds(30), maxCount: 100);
        foreach (var sequence in sequences)
        {
            window.Add(Entry(sequence, Start));
        }
        return window;
    }

    private static PublishedEntry Entry(long sequence, long at, string channel = "") => new(sequence, Array.Empty<byte>(), at, default, channel);

    private static long Ticks(TimeSpan span) => (long)(span.TotalSeconds * Stopwatch.Frequency);
}
