using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>Which life of Redis the node talks to, shared by the reader and the publisher: a random epoch key is set
/// when absent; finding another value than the one known means Redis restarted without its data. That is reported
/// once per new epoch, whichever of the two noticed it first.</summary>
internal sealed class RedisEpoch(RedisStreamsKeys keys, Func<IDatabase> database, Action<string, string> restartedEmpty) : IDisposable
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private string? _known;

    /// <summary>The epoch last read; Redis is asked only the first time.</summary>
    public ValueTask<string> CurrentAsync(CancellationToken cancellationToken)
        => Volatile.Read(ref _known) is { } known ? new ValueTask<string>(known) : new ValueTask<string>(RefreshAsync(cancellationToken));

    /// <summary>Reads the epoch again (setting one when Redis has none). When it changed, reports the restart (old,
    /// new) before returning the new one.</summary>
    public async Task<string> RefreshAsync(CancellationToken cancellationToken)
    {
        string? before;
        string current;
        await _lock.WaitAsync(cancellationToken);
        try
        {
            var db = database();
            await db.StringSetAsync(keys.Epoch, Guid.NewGuid().ToString("N"), when: When.NotExists);
            current = (string?)await db.StringGetAsync(keys.Epoch) ?? throw new RedisException("The epoch key vanished while it was being read.");
            before = _known;
            Volatile.Write(ref _known, current);
        }
        finally
        {
            _lock.Release();
        }
        if (before is not null && before != current)
        {
            restartedEmpty(before, current);
        }
        return current;
    }

    public void Dispose() => _lock.Dispose();
}
