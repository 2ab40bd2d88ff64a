using Benchmarks.Scenarios;

namespace Benchmarks.Tests;

/// <summary>The cells scenario's bookkeeping notices what it is meant to notice: lost, duplicated, reordered, misdelivered
/// and stale messages (fed by hand here, no servers).</summary>
public sealed class ClientSinkTests
{
    [Fact]
    public void A_client_counts_duplicates_reordering_misdelivery_and_stale_messages()
    {
        using var window = new SemaphoreSlim(10, 10);
        var state = new RunState(16);
        state.Reset(run: 7, targets: [1, 1], window, settleOnSend: false);
        for (long seq = 0; seq < 6; seq++)
        {
            window.Wait();
            state.BeginSend(seq);
        }

        var sink = new ClientSink();
        // This client gets the odd sequence numbers (residue 1 of 2).
        sink.Reset(run: 7, modulus: 2, residue: 1, state);

        foreach (var seq in new long[] { 1, 5, 3, 5, 4 })
        {
            sink.OnMessage(7, seq, latencyTicks: 100);
        }

        sink.OnMessage(6, 7, latencyTicks: 100);

        Assert.Equal(3, sink.Received);
        Assert.Equal(1, sink.Duplicates);
        Assert.Equal(1, sink.Reordered);
        Assert.Equal(1, sink.Misdelivered);
        Assert.Equal(1, sink.Stale);
        Assert.True(sink.Has(3));
        Assert.False(sink.Has(7));
        Assert.Equal(3, sink.Histogram.Count);
        // Each of 1, 3 and 5 has its one recipient: settled, their window slots free again.
        Assert.Equal(3, state.Settled);
        Assert.Equal(7, window.CurrentCount);
    }

    [Fact]
    public void The_sender_side_counts_what_was_sent_but_never_arrived()
    {
        using var window = new SemaphoreSlim(10, 10);
        var state = new RunState(16);
        state.Reset(run: 1, targets: [2], window, settleOnSend: false);
        var sinks = new[] { new ClientSink(), new ClientSink() };
        foreach (var sink in sinks)
        {
            sink.Reset(run: 1, modulus: 1, residue: 0, state);
        }

        for (long seq = 0; seq < 4; seq++)
        {
            window.Wait();
            state.BeginSend(seq);
            if (seq == 3)
            {
                state.SendThrew(1, seq, new InvalidOperationException("refused"));
            }
            else
            {
                state.SendReturned(1, seq);
            }

            state.EndSend(1);
        }

        // Message 0 reaches both clients, message 1 one of them, message 2 neither.
        sinks[0].OnMessage(1, 0, 10);
        sinks[1].OnMessage(1, 0, 10);
        sinks[0].OnMessage(1, 1, 10);

        var (sent, failed, hung, expected, delivered, failedButDelivered) = state.Tally();
        Assert.Equal(3, sent);
        Assert.Equal(1, failed);
        Assert.Equal(0, hung);
        Assert.Equal(6, expected);
        Assert.Equal(3, delivered);
        Assert.Equal(0, failedButDelivered);
        // Settled: message 0 (both recipients) and message 3 (its send threw); 1 and 2 still hold their window slots.
        Assert.Equal(2, state.Settled);
        Assert.Equal(8, window.CurrentCount);
        Assert.Equal("InvalidOperationException: refused", state.FirstError);
    }
}
