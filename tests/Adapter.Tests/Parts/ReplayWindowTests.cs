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
