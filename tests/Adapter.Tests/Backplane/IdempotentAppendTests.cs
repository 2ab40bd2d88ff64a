using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>The append script against a real redis-server: a retried batch is never appended twice nor out of order,
/// and a Redis that lost entries or restarted empty is reported, not papered over.</summary>
public sealed class IdempotentAppendTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly RedisStreamsKeys _keys = new($"ia{Guid.NewGuid():N}:", "s");
    private ConnectionMultiplexer? _connection;

    private IDatabase Db => _connection!.GetDatabase();

    public async Task InitializeAsync()
    {
        _connection = await ConnectionMultiplexer.ConnectAsync(redis.Server.ConnectionString);
        await Db.StringSetAsync(_keys.Epoch, "e1");
    }

    public async Task DisposeAsync() => await _connection!.DisposeAsync();

    [Fact]
    public async Task A_batch_is_appended_in_order_and_the_nodes_last_number_recorded()
    {
        var result = await AppendAsync(Entries(1, 2, 3));

        Assert.Equal(AppendOutcome.Appended, result.Outcome);
        Assert.All(result.EntryIds!, id => Assert.NotNull(id));
        Assert.Equal(["1", "2", "3"], await SequencesInStreamAsync());
        Assert.Equal(3, (long)await Db.HashGetAsync(_keys.Sequences, "node"));
    }

    [Fact]
    public async Task Batches_of_one_size_one_after_another_each_append_their_own_packets()
    {
        // Calls of the same size take turns with one argument array: none may carry another's values.
        for (var first = 1; first <= 9; first += 2)
        {
            var result = await IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(first, first + 1), maxLength: 1000, wantIds: false);
            Assert.Equal(AppendOutcome.Appended, result.Outcome);
            Assert.Equal(2, result.Handled);
        }

        Assert.Equal(["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"], await SequencesInStreamAsync());
    }

    [Fact]
    public async Task Retrying_a_batch_whose_reply_was_lost_appends_only_what_was_not_there()
    {
        await AppendAsync(Entries(1, 2));

        var retry = await AppendAsync(Entries(1, 2, 3));

        Assert.Equal(AppendOutcome.Appended, retry.Outcome);
        Assert.Null(retry.EntryIds![0]);
        Assert.Null(retry.EntryIds![1]);
        Assert.NotNull(retry.EntryIds![2]);
        Assert.Equal(["1", "2", "3"], await SequencesInStreamAsync());
    }

    [Fact]
    public async Task An_entry_whose_predecessors_Redis_lost_stops_the_batch_there_and_reports_the_last_number()
    {
        await AppendAsync(Entries(1, 2));

        var result = await AppendAsync(Entries(3, 5, 6));

        Assert.Equal(AppendOutcome.SequenceMissing, result.Outcome);
        Assert.Equal(3, result.LastSequence);
        Assert.Single(result.EntryIds!);
        Assert.Equal(["1", "2", "3"], await SequencesInStreamAsync());
        Assert.Equal(3, (long)await Db.HashGetAsync(_keys.Sequences, "node"));
    }

    [Fact]
    public async Task A_forced_entry_jumps_over_lost_numbers_and_says_its_numbering_restarts()
    {
        await AppendAsync(Entries(1));

        var result = await AppendAsync([new PendingAppend(5, 5, Value(5), Force: true), new PendingAppend(6, 6, Value(6), Force: false)]);

        Assert.Equal(AppendOutcome.Appended, result.Outcome);
        var entries = await Db.StreamRangeAsync(_keys.Stream);
        Assert.Equal("1", (string?)entries[^2]["r"]);
        Assert.True(entries[^1]["r"].IsNull);
    }

    [Fact]
    public async Task An_entry_carrying_a_run_of_packets_is_appended_once_and_a_retry_of_it_is_not_appended_again()
    {
        await AppendAsync(Entries(1));

        var first = await AppendAsync([new PendingAppend(2, 4, Value(234), Force: false)]);
        var retry = await AppendAsync([new PendingAppend(2, 4, Value(234), Force: false), new PendingAppend(5, 5, Value(5), Force: false)]);
        var behind = await AppendAsync([new PendingAppend(7, 9, Value(789), Force: false)]);

        Assert.Equal(AppendOutcome.Appended, first.Outcome);
        Assert.Equal((AppendOutcome.Appended, (string?)null), (retry.Outcome, retry.EntryIds![0]));
        Assert.Equal((AppendOutcome.SequenceMissing, 5L), (behind.Outcome, behind.LastSequence));
        Assert.Equal(["1", "234", "5"], await SequencesInStreamAsync());
        Assert.Equal(5, (long)await Db.HashGetAsync(_keys.Sequences, "node"));
    }

    [Fact]
    public async Task Another_epoch_appends_nothing()
    {
        await Db.StringSetAsync(_keys.Epoch, "e2");

        var result = await AppendAsync(Entries(1));

        Assert.Equal(AppendOutcome.EpochChanged, result.Outcome);
        Assert.Equal(0, await Db.StreamLengthAsync(_keys.Stream));
    }

    [Fact]
    public async Task Without_ids_asked_the_script_answers_how_many_entries_it_handled()
    {
        await AppendAsync(Entries(1, 2));

        var retried = await IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(1, 2, 3), maxLength: 1000, wantIds: false);
        var stuck = await IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(4, 6), maxLength: 1000, wantIds: false);

        Assert.Equal((AppendOutcome.Appended, 3, (string?[]?)null), (retried.Outcome, retried.Handled, retried.EntryIds));
        Assert.Equal((AppendOutcome.SequenceMissing, 1, 4L), (stuck.Outcome, stuck.Handled, stuck.LastSequence));
        Assert.Equal(["1", "2", "3", "4"], await SequencesInStreamAsync());
    }

    [Fact]
    public async Task An_append_that_saw_a_higher_total_than_Redis_now_holds_appends_nothing_and_says_so()
    {
        var first = await IdempotentAppend.AppendAsync(Db, _keys, "e1", "node",
            [new PendingAppend(1, 1, Value(1), Force: false), new PendingAppend(1, 2, Value(12), Force: false, Channel: "other")], maxLength: 1000, wantIds: false);
        Assert.Equal(3, first.Total); // the shared stream's last number 1 + the inbox's 2

        // Redis lost the inbox's entries (as a replica promoted without them): its sequences and total fall back.
        await Db.HashSetAsync(_keys.InboxSequences("other"), "node", 0);
        await Db.HashSetAsync(_keys.Totals, "node", 1);
        var refused = await IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(2), maxLength: 1000, wantIds: false, expectedTotal: first.Total);
        var unchecked_ = await IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(2), maxLength: 1000, wantIds: false);

        Assert.Equal((AppendOutcome.BehindElsewhere, 1L), (refused.Outcome, refused.Total));
        Assert.Equal((AppendOutcome.Appended, 2L), (unchecked_.Outcome, unchecked_.Total));
        Assert.Equal(["1", "2"], await SequencesInStreamAsync());
    }

    [Fact]
    public async Task An_append_sent_before_the_one_ahead_was_answered_goes_in_only_after_that_one_went_in_in_full()
    {
        var first = await IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(1, 2), maxLength: 1000, wantIds: false);
        Assert.Equal(2, first.Total);

        // Both sent at once, in order, as the publisher does: the one ahead (3, 4) stops short at 5 (its predecessor is
        // missing), so the one behind it, which asks for the total it would have left (2 + 3 packets), is refused whole,
        // although its own numbers would follow what went in.
        var ahead = IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(3, 4, 6), maxLength: 1000, wantIds: false, expectedTotal: 2);
        var behind = IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(5), maxLength: 1000, wantIds: false, expectedTotal: 5, exact: true);
        Assert.Equal((AppendOutcome.SequenceMissing, 2, 4L), ((await ahead).Outcome, (await ahead).Handled, (await ahead).LastSequence));
        Assert.Equal((AppendOutcome.NotAfterPrevious, 0, 4L), ((await behind).Outcome, (await behind).Handled, (await behind).Total));
        Assert.Equal(["1", "2", "3", "4"], await SequencesInStreamAsync());

        // Both sent at once again, the one ahead going in in full: the one behind follows it.
        ahead = IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(5, 6), maxLength: 1000, wantIds: false, expectedTotal: 4);
        behind = IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(7, 8), maxLength: 1000, wantIds: false, expectedTotal: 6, exact: true);
        Assert.Equal((AppendOutcome.Appended, 6L), ((await ahead).Outcome, (await ahead).Total));
        Assert.Equal((AppendOutcome.Appended, 2, 8L), ((await behind).Outcome, (await behind).Handled, (await behind).Total));
        Assert.Equal(["1", "2", "3", "4", "5", "6", "7", "8"], await SequencesInStreamAsync());

        // A total above what the call asks is refused as well (an exact check, not a lower bound).
        var stale = await IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", Entries(9), maxLength: 1000, wantIds: true, expectedTotal: 7, exact: true);
        Assert.Equal((AppendOutcome.NotAfterPrevious, 0, 8L), (stale.Outcome, stale.Handled, stale.Total));
        Assert.Equal(8, (long)await Db.HashGetAsync(_keys.Sequences, "node"));
    }

    [Fact]
    public async Task Each_channel_has_its_own_stream_and_numbering_and_only_inboxes_expire()
    {
        var result = await AppendAsync(
        [
            new PendingAppend(1, 1, Value(1), Force: false),
            new PendingAppend(1, 1, Value(1), Force: false, Channel: "b"),
            new PendingAppend(2, 2, Value(2), Force: false),
            new PendingAppend(1, 1, Value(1), Force: false, Channel: "c"),
            new PendingAppend(2, 2, Value(2), Force: false, Channel: "b"),
        ]);

        Assert.Equal(AppendOutcome.Appended, result.Outcome);
        Assert.Equal(5, result.EntryIds!.Count(id => id is not null));
        Assert.Equal(["1", "2"], await SequencesInStreamAsync());
        Assert.Equal(["1", "2"], await SequencesInStreamAsync(_keys.Inbox("b")));
        Assert.Equal(["1"], await SequencesInStreamAsync(_keys.Inbox("c")));
        Assert.Equal(2, (long)await Db.HashGetAsync(_keys.Sequences, "node"));
        Assert.Equal(2, (long)await Db.HashGetAsync(_keys.InboxSequences("b"), "node"));
        Assert.Equal(1, (long)await Db.HashGetAsync(_keys.InboxSequences("c"), "node"));

        Assert.Null(await Db.KeyTimeToLiveAsync(_keys.Stream));
        Assert.Null(await Db.KeyTimeToLiveAsync(_keys.Sequences));
        foreach (var key in new[] { _keys.Inbox("b"), _keys.InboxSequences("b"), _keys.Inbox("c"), _keys.InboxSequences("c") })
        {
            var ttl = await Db.KeyTimeToLiveAsync(key);
            Assert.True(ttl > RedisStreamsKeys.InboxLifetime - TimeSpan.FromMinutes(1) && ttl <= RedisStreamsKeys.InboxLifetime, $"{key}: TTL {ttl}");
        }
    }

    [Fact]
    public async Task An_inbox_entry_whose_predecessors_Redis_lost_reports_that_inboxs_last_number_and_keeps_what_came_before()
    {
        await AppendAsync([new PendingAppend(1, 1, Value(1), Force: false, Channel: "b"), new PendingAppend(2, 2, Value(2), Force: false, Channel: "b")]);
        await Db.HashSetAsync(_keys.InboxSequences("b"), "node", 1); // as if Redis had lost number 2

        var result = await AppendAsync(
        [
            new PendingAppend(1, 1, Value(1), Force: false),
            new PendingAppend(3, 3, Value(3), Force: false, Channel: "b"),
            new PendingAppend(2, 2, Value(2), Force: false),
        ]);

        Assert.Equal(AppendOutcome.SequenceMissing, result.Outcome);
        Assert.Equal(1, result.LastSequence);
        Assert.Single(result.EntryIds!);
        Assert.Equal(["1"], await SequencesInStreamAsync());
        Assert.Equal(1, (long)await Db.HashGetAsync(_keys.Sequences, "node"));
    }

    [Fact]
    public async Task Ids_come_from_one_clock_so_they_are_ordered_across_the_shared_stream_and_every_inbox()
    {
        var result = await AppendAsync(
        [
            new PendingAppend(1, 1, Value(1), Force: false, Channel: "b"),
            new PendingAppend(1, 1, Value(1), Force: false),
            new PendingAppend(2, 2, Value(2), Force: false, Channel: "b"),
            new PendingAppend(1, 1, Value(1), Force: false, Channel: "c"),
        ]);
        await IdempotentAppend.AppendUnsequencedAsync(Db, _keys, Value(0), maxLength: 1000);
        var next = await AppendAsync([new PendingAppend(3, 3, Value(3), Force: false, Channel: "b")]);

        var ids = result.EntryIds!.Concat([(string?)(await Db.StreamRangeAsync(_keys.Stream))[^1].Id]).Concat(next.EntryIds!)
            .Select(id => StreamId.Parse(id!)).ToList();
        Assert.Equal(ids.Order().ToList(), ids);
        Assert.Equal(ids.Count, ids.Distinct().Count());
    }

    [Fact]
    public async Task An_id_added_past_the_clock_by_someone_else_makes_the_clock_jump_past_it_and_the_append_succeeds()
    {
        await Db.StreamAddAsync(_keys.Stream, [new NameValueEntry("x", "1")], messageId: "9999999999999-5");

        var result = await AppendAsync(Entries(1, 2));

        Assert.Equal(AppendOutcome.Appended, result.Outcome);
        Assert.Equal([new StreamId(9999999999999, 6), new StreamId(9999999999999, 7)], result.EntryIds!.Select(id => StreamId.Parse(id!)));
        await IdempotentAppend.AppendUnsequencedAsync(Db, _keys, Value(0), maxLength: 1000);
        Assert.Equal("9999999999999-8", (string?)(await Db.StreamRangeAsync(_keys.Stream))[^1].Id);
    }

    private Task<AppendResult> AppendAsync(PendingAppend[] entries)
        => IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", entries, maxLength: 1000);

    private static PendingAppend[] Entries(params long[] sequences) => [.. sequences.Select(s => new PendingAppend(s, s, Value(s), Force: false))];

    private static byte[] Value(long sequence) => System.Text.Encoding.UTF8.GetBytes(sequence.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private async Task<string[]> SequencesInStreamAsync(RedisKey? stream = null)
        => [.. (await Db.StreamRangeAsync(stream ?? _keys.Stream)).Select(e => (string)e["e"]!)];
}
