using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using SignalR.RedisStreams.Internal;

namespace SignalR.RedisStreams.Tests.Parts;

/// <summary>Membership (who is alive) and acknowledgements, without Redis.</summary>
public sealed class MembershipAndAckTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly List<string> _gone = [];
    private readonly NodeMembership _membership;

    public MembershipAndAckTests()
    {
        _membership = new NodeMembership("self", new RedisStreamsOptions { HeartbeatTimeout = Timeout }, NullLogger.Instance, _gone.Add);
    }

    [Fact]
    public void A_node_silent_past_the_timeout_is_gone_once_and_a_node_heard_in_time_stays()
    {
        var start = Stopwatch.GetTimestamp();
        _membership.Heard("self", start);
        _membership.Heard("a", start);
        _membership.Heard("b", start + Ticks(TimeSpan.FromSeconds(5)));

        var later = start + Ticks(Timeout + TimeSpan.FromSeconds(1));
        _membership.DropSilentNodes(later);
        _membership.DropSilentNodes(later);

        Assert.Equal(["a"], _gone);
        Assert.True(_membership.IsGone("a"));
        Assert.Equal(["b", "self"], _membership.LiveNodes.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void This_node_is_never_declared_gone_not_even_by_its_own_goodbye()
    {
        var start = Stopwatch.GetTimestamp();
        _membership.Heard("self", start);

        _membership.SaidGoodbye("self");
        _membership.DropSilentNodes(start + Ticks(Timeout * 3));

        Assert.Empty(_gone);
    }

    [Fact]
    public void A_goodbye_removes_the_node_for_good_and_what_it_appended_after_does_not_bring_it_back()
    {
        _membership.Heard("a");

        _membership.SaidGoodbye("a");
        Assert.Equal(["a"], _gone);
        Assert.True(_membership.IsGone("a"));

        // A heartbeat it appended just after its goodbye, read just after it; and a wait on it that starts now.
        _membership.Heard("a");
        _membership.Expect("a");
        Assert.True(_membership.IsGone("a"));
        Assert.DoesNotContain("a", _membership.LiveNodes);
        Assert.Equal(0, _membership.LiveCount);
        Assert.Equal(["a"], _gone);
    }

    [Fact]
    public void A_node_gone_silent_comes_back_when_heard_again()
    {
        var start = Stopwatch.GetTimestamp();
        _membership.Heard("frozen", start);
        _membership.DropSilentNodes(start + Ticks(Timeout + TimeSpan.FromSeconds(1)));
        Assert.True(_membership.IsGone("frozen"));

        _membership.Heard("frozen");

        Assert.False(_membership.IsGone("frozen"));
        Assert.Contains("frozen", _membership.LiveNodes);
    }

    [Fact]
    public void An_expected_node_that_never_speaks_is_declared_gone()
    {
        _membership.Expect("quiet");

        _membership.DropSilentNodes(Stopwatch.GetTimestamp() + Ticks(Timeout + TimeSpan.FromSeconds(1)));

        Assert.Equal(["quiet"], _gone);
    }

    [Fact]
    public async Task An_ack_completes_its_waiter_and_an_unknown_or_forgotten_one_is_ignored()
    {
        var acks = new AckTracker();
        var (id, acknowledged) = acks.Create("b");
        var (forgottenId, forgotten) = acks.Create("b");

        acks.Forget(forgottenId);
        acks.Complete(forgottenId);
        acks.Complete(12345);
        acks.Complete(id);

        await acknowledged.WaitAsync(Timeout);
        Assert.False(forgotten.IsCompleted);
        Assert.Equal(0, acks.Count);
    }

    [Fact]
    public async Task Acks_expected_from_a_node_that_is_gone_fail_and_others_keep_waiting()
    {
        var acks = new AckTracker();
        var (_, fromB) = acks.Create("b");
        var (_, fromC) = acks.Create("c");

        acks.FailNode("b");

        var ex = await Assert.ThrowsAsync<IOException>(() => fromB.WaitAsync(Timeout));
        Assert.Contains("'b'", ex.Message, StringComparison.Ordinal);
        Assert.False(fromC.IsCompleted);
    }

    private static long Ticks(TimeSpan span) => (long)(span.TotalSeconds * Stopwatch.Frequency);
}
