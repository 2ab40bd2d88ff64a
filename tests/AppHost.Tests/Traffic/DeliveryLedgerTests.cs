using TrafficGenerator;

namespace AppHost.Tests.Traffic;

/// <summary>The load generator's count (<see cref="DeliveryLedger"/>): what counts as delivered, lost, duplicated, and who
/// is expected to receive a message. Time is passed in: no app, no waiting.</summary>
public sealed class DeliveryLedgerTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    /// <summary>How long a send takes in these tests: its completion is <see cref="Deadline"/>'s start.</summary>
    private static readonly TimeSpan SendTime = TimeSpan.FromMilliseconds(10);

    [Fact]
    public void A_message_every_joined_session_received_is_delivered_as_soon_as_the_last_one_has_it()
    {
        var ledger = LedgerWithSessions("a", "b");
        Send(ledger, 1, at: T0.AddSeconds(1));
        ledger.Received("a", 1);
        Assert.Empty(ledger.Judge(T0.AddSeconds(2)));
        Assert.Equal(new TrafficTotals(Sent: 1, Pending: 1), ledger.Totals);

        ledger.Received("b", 1);
        Assert.Empty(ledger.Judge(T0.AddSeconds(2)));
        Assert.Equal(new TrafficTotals(Sent: 1, Delivered: 1), ledger.Totals);
    }

    [Fact]
    public void A_message_a_session_still_lacks_at_the_deadline_is_lost_and_named_with_that_session()
    {
        var ledger = LedgerWithSessions("a", "b");
        Send(ledger, 7, at: T0.AddSeconds(1));
        ledger.Received("a", 7);

        var confirmedAt = T0.AddSeconds(1) + SendTime;
        Assert.Empty(ledger.Judge(confirmedAt + Deadline - TimeSpan.FromMilliseconds(1)));
        var lost = Assert.Single(ledger.Judge(confirmedAt + Deadline));
        Assert.Equal(7, lost.Sequence);
        Assert.Equal(["b"], lost.MissingAt);
        Assert.Equal(new TrafficTotals(Sent: 1, Lost: 1), ledger.Totals);
    }

    [Fact]
    public void A_session_that_joined_after_the_send_or_ended_before_the_judgement_expects_nothing()
    {
        var ledger = LedgerWithSessions("a", "ended");
        Send(ledger, 1, at: T0.AddSeconds(1));
        ledger.SessionOpened("late");
        ledger.SessionJoined("late", T0.AddSeconds(2));
        ledger.SessionEnded("ended", T0.AddSeconds(3));
        ledger.Received("a", 1);

        Assert.Empty(ledger.Judge(T0.AddSeconds(4)));
        Assert.Equal(new TrafficTotals(Sent: 1, Delivered: 1), ledger.Totals);
    }

    [Fact]
    public void A_session_that_is_connecting_but_has_not_joined_the_room_expects_nothing()
    {
        var ledger = LedgerWithSessions("a");
        ledger.SessionOpened("connecting");
        Send(ledger, 1, at: T0.AddSeconds(1));
        ledger.Received("a", 1);

        Assert.Empty(ledger.Judge(T0.AddSeconds(2)));
        Assert.Equal(new TrafficTotals(Sent: 1, Delivered: 1), ledger.Totals);
    }

    [Fact]
    public void A_send_that_failed_is_counted_as_failed_and_expected_nowhere()
    {
        var ledger = LedgerWithSessions("a");
        ledger.Issued(1, T0.AddSeconds(1));
        ledger.Failed(1);

        Assert.Empty(ledger.Judge(T0 + Deadline + Deadline));
        Assert.Equal(new TrafficTotals(FailedToSend: 1), ledger.Totals);
    }

    [Fact]
    public void A_message_not_yet_confirmed_is_not_judged_even_when_it_already_arrived()
    {
        var ledger = LedgerWithSessions("a");
        ledger.Issued(1, T0.AddSeconds(1));
        ledger.Received("a", 1);

        Assert.Empty(ledger.Judge(T0 + Deadline + Deadline));
        Assert.Equal(new TrafficTotals(), ledger.Totals);

        ledger.Confirmed(1, T0 + Deadline + Deadline);
        Assert.Empty(ledger.Judge(T0 + Deadline + Deadline));
        Assert.Equal(new TrafficTotals(Sent: 1, Delivered: 1), ledger.Totals);
    }

    [Fact]
    public void A_message_received_twice_by_one_session_is_a_duplicate_also_after_it_was_judged()
    {
        var ledger = LedgerWithSessions("a");
        Send(ledger, 1, at: T0.AddSeconds(1));
        ledger.Received("a", 1);
        Assert.Empty(ledger.Judge(T0.AddSeconds(2)));
        ledger.Received("a", 1);

        Assert.Equal(new TrafficTotals(Sent: 1, Delivered: 1, Duplicates: 1), ledger.Totals);
    }

    [Fact]
    public void A_message_nobody_was_connected_to_receive_is_unchecked_not_lost()
    {
        var ledger = LedgerWithSessions("a");
        ledger.SessionEnded("a", T0.AddSeconds(2));
        Send(ledger, 1, at: T0.AddSeconds(1));

        Assert.Empty(ledger.Judge(T0.AddSeconds(1) + SendTime + Deadline));
        Assert.Equal(new TrafficTotals(Sent: 1, Unchecked: 1), ledger.Totals);
    }

    private static DeliveryLedger LedgerWithSessions(params string[] sessions)
    {
        var ledger = new DeliveryLedger(Deadline);
        foreach (var session in sessions)
        {
            ledger.SessionOpened(session);
            ledger.SessionJoined(session, T0);
        }

        return ledger;
    }

    /// <summary>Issues <paramref name="sequence"/> at <paramref name="at"/>; its send completes <see cref="SendTime"/> later.</summary>
    private static void Send(DeliveryLedger ledger, long sequence, DateTimeOffset at)
    {
        ledger.Issued(sequence, at);
        ledger.Confirmed(sequence, at + SendTime);
    }
}
