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
        Assert.Equal(3, result.LastSequence);
        Assert.All(result.EntryIds, id => Assert.NotNull(id));
        Assert.Equal(["1", "2", "3"], await SequencesInStreamAsync());
        Assert.Equal(3, (long)await Db.HashGetAsync(_keys.Sequences, "node"));
    }

    [Fact]
    public async Task Retrying_a_batch_whose_reply_was_lost_appends_only_what_was_not_there()
    {
        await AppendAsync(Entries(1, 2));

        var retry = await AppendAsync(Entries(1, 2, 3));

        Assert.Equal(AppendOutcome.Appended, retry.Outcome);
        Assert.Null(retry.EntryIds[0]);
        Assert.Null(retry.EntryIds[1]);
        Assert.NotNull(retry.EntryIds[2]);
        Assert.Equal(["1", "2", "3"], await SequencesInStreamAsync());
    }

    [Fact]
    public async Task An_entry_whose_predecessors_Redis_lost_stops_the_batch_there_and_reports_the_last_number()
    {
        await AppendAsync(Entries(1, 2));

        var result = await AppendAsync(Entries(3, 5, 6));

        Assert.Equal(AppendOutcome.SequenceMissing, result.Outcome);
        Assert.Equal(3, result.LastSequence);
        Assert.Single(result.EntryIds);
        Assert.Equal(["1", "2", "3"], await SequencesInStreamAsync());
        Assert.Equal(3, (long)await Db.HashGetAsync(_keys.Sequences, "node"));
    }

    [Fact]
    public async Task A_forced_entry_jumps_over_lost_numbers_and_says_its_numbering_restarts()
    {
        await AppendAsync(Entries(1));

        var result = await AppendAsync([new PendingAppend(5, Fields(5), Force: true), new PendingAppend(6, Fields(6), Force: false)]);

        Assert.Equal(AppendOutcome.Appended, result.Outcome);
        var entries = await Db.StreamRangeAsync(_keys.Stream);
        Assert.Equal("1", (string?)entries[^2]["r"]);
        Assert.True(entries[^1]["r"].IsNull);
    }

    [Fact]
    public async Task Another_epoch_appends_nothing()
    {
        await Db.StringSetAsync(_keys.Epoch, "e2");

        var result = await AppendAsync(Entries(1));

        Assert.Equal(AppendOutcome.EpochChanged, result.Outcome);
        Assert.Equal(0, await Db.StreamLengthAsync(_keys.Stream));
    }

    private Task<AppendResult> AppendAsync(PendingAppend[] entries)
        => IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", entries, maxLength: 1000);

    private static PendingAppend[] Entries(params long[] sequences) => [.. sequences.Select(s => new PendingAppend(s, Fields(s), Force: false))];

    private static NameValueEntry[] Fields(long sequence) => [new("s", sequence), new("p", "x")];

    private async Task<string[]> SequencesInStreamAsync()
        => [.. (await Db.StreamRangeAsync(_keys.Stream)).Select(e => (string)e["s"]!)];
}
