using SignalR.RedisStreams.Internal;

namespace SignalR.RedisStreams.Tests.Parts;

/// <summary>Deduplication and gap detection, without Redis.</summary>
public sealed class SequenceTrackerTests
{
    [Fact]
    public void Consecutive_numbers_are_new_and_leave_no_gap()
    {
        var tracker = new SequenceTracker();

        Assert.True(tracker.Accept("a", 1, sequenceRestarts: false, out var gap1));
        Assert.True(tracker.Accept("a", 2, sequenceRestarts: false, out var gap2));

        Assert.Equal(0, gap1);
        Assert.Equal(0, gap2);
    }

    [Fact]
    public void A_number_already_processed_is_a_duplicate_whatever_came_after()
    {
        var tracker = new SequenceTracker();
        tracker.Accept("a", 1, false, out _);
        tracker.Accept("a", 2, false, out _);

        Assert.False(tracker.Accept("a", 2, false, out _));
        Assert.False(tracker.Accept("a", 1, false, out _));
        Assert.True(tracker.Accept("a", 3, false, out _));
    }

    [Fact]
    public void Skipped_numbers_are_counted_as_a_gap_once()
    {
        var tracker = new SequenceTracker();
        tracker.Accept("a", 1, false, out _);

        Assert.True(tracker.Accept("a", 5, false, out var missing));
        Assert.Equal(3, missing);
        Assert.True(tracker.Accept("a", 6, false, out var after));
        Assert.Equal(0, after);
    }

    [Fact]
    public void Senders_are_tracked_apart()
    {
        var tracker = new SequenceTracker();
        tracker.Accept("a", 1, false, out _);

        Assert.True(tracker.Accept("b", 1, false, out var gap));
        Assert.Equal(0, gap);
        Assert.False(tracker.Accept("b", 1, false, out _));
    }

    [Fact]
    public void The_baseline_makes_a_hole_in_the_first_entry_read_visible()
    {
        var tracker = new SequenceTracker();
        tracker.SetBaseline("a", 10);

        Assert.False(tracker.Accept("a", 10, false, out _));
        Assert.True(tracker.Accept("a", 14, false, out var missing));
        Assert.Equal(3, missing);
    }

    [Fact]
    public void A_baseline_never_moves_a_sender_backwards()
    {
        var tracker = new SequenceTracker();
        tracker.Accept("a", 7, false, out _);
        tracker.SetBaseline("a", 3);

        Assert.False(tracker.Accept("a", 5, false, out _));
    }

    [Fact]
    public void A_sender_first_seen_after_the_start_counts_from_one()
    {
        var tracker = new SequenceTracker();

        Assert.True(tracker.Accept("new", 4, false, out var missing));
        Assert.Equal(3, missing);
    }

    [Fact]
    public void A_restarted_numbering_is_no_gap_for_a_reader_that_never_knew_the_sender()
    {
        var tracker = new SequenceTracker();

        Assert.True(tracker.Accept("a", 40, sequenceRestarts: true, out var unknownBefore));
        Assert.Equal(0, unknownBefore);

        var known = new SequenceTracker();
        known.Accept("a", 30, false, out _);
        Assert.True(known.Accept("a", 40, sequenceRestarts: true, out var knownBefore));
        Assert.Equal(9, knownBefore);
    }
}
