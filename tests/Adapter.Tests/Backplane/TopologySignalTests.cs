using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>What the node does when a Redis Cluster's slot moves to another master (<see cref="TopologySignal"/>), with
/// a real redis-server standing in for the old master: one that does not answer (writes paused with <c>CLIENT
/// PAUSE</c>). An append waiting on it is abandoned at the move, runs later all the same, and is not appended twice
/// when sent again; a retry's backoff ends at the move.</summary>
public sealed class TopologySignalTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly RedisStreamsKeys _keys = new($"ts{Guid.NewGuid():N}:", "s");
    private ConnectionMultiplexer? _connection;
    private ConnectionMultiplexer? _admin;

    private IDatabase Db => _connection!.GetDatabase();

    public async Task InitializeAsync()
    {
        _connection = await ConnectionMultiplexer.ConnectAsync(redis.Server.ConnectionString);
        // CLIENT PAUSE and UNPAUSE on a connection of their own: the paused append holds up its own connection's queue.
        _admin = await ConnectionMultiplexer.ConnectAsync(redis.Server.ConnectionString);
        await Db.StringSetAsync(_keys.Epoch, "e1");
    }

    public async Task DisposeAsync()
    {
        await _connection!.DisposeAsync();
        await _admin!.DisposeAsync();
    }

    [Fact]
    public async Task An_append_waiting_on_the_old_master_is_abandoned_at_the_move_and_sent_again_without_a_duplicate()
    {
        using var signal = new TopologySignal();
        signal.OnCluster();
        Task<AppendResult> waiting;
        await _admin!.GetDatabase().ExecuteAsync("CLIENT", "PAUSE", "20000", "WRITE");
        try
        {
            waiting = AppendAsync(signal.Token);
            signal.Raise();
            await Assert.ThrowsAsync<SlotMovedException>(() => Eventually.WithinAsync(waiting, "the abandoned append to throw"));
        }
        finally
        {
            await _admin.GetDatabase().ExecuteAsync("CLIENT", "UNPAUSE");
        }

        // The abandoned call still reaches Redis once it answers again; sent again, its entry is found there already.
        await Eventually.TrueAsync(async () => await Db.StreamLengthAsync(_keys.Stream) == 1, "the abandoned append to run");
        var again = await AppendAsync(signal.Token);
        Assert.Equal(AppendOutcome.Appended, again.Outcome);
        Assert.Null(Assert.Single(again.EntryIds!));
        Assert.Equal(1, await Db.StreamLengthAsync(_keys.Stream));
    }

    [Fact]
    public async Task A_token_taken_after_the_move_does_not_abandon_and_on_a_single_redis_there_is_none()
    {
        Assert.False(new TopologySignal().Token.CanBeCanceled);

        using var signal = new TopologySignal();
        signal.OnCluster();
        var before = signal.Token;
        signal.Raise();
        Assert.True(before.IsCancellationRequested);
        var result = await AppendAsync(signal.Token);
        Assert.Equal(AppendOutcome.Appended, result.Outcome);
        Assert.NotNull(Assert.Single(result.EntryIds!));
    }

    [Fact]
    public async Task A_retry_waiting_out_its_backoff_goes_at_once_when_a_slot_moves()
    {
        using var signal = new TopologySignal();
        signal.OnCluster();
        var backoff = signal.DelayAsync(TimeSpan.FromMinutes(10), CancellationToken.None);
        Assert.False(backoff.IsCompleted);
        signal.Raise();
        await Eventually.WithinAsync(backoff, "the backoff to end at the move");

        // Stopping still ends it, as an OperationCanceledException.
        using var stopping = new CancellationTokenSource();
        var stopped = signal.DelayAsync(TimeSpan.FromMinutes(10), stopping.Token);
        await stopping.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Eventually.WithinAsync(stopped, "the backoff to end when stopping"));
    }

    private Task<AppendResult> AppendAsync(CancellationToken abandon)
        => IdempotentAppend.AppendAsync(Db, _keys, "e1", "node", [new PendingAppend(1, 1, "1"u8.ToArray(), Force: false)], maxLength: 1000, abandon: abandon);
}
