using System.Diagnostics;
using System.Globalization;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Reads the stream on the node's dedicated connection with a blocking XREAD: positions itself at a concrete id
/// (<see cref="StartPosition"/>), keeps the cursor, resumes after the last id it processed after any error (with
/// backoff) and from the new stream's start after Redis restarted empty; decodes each entry (malformed ones are logged
/// and skipped), drops duplicates and reports gaps (<see cref="SequenceTracker"/>), measures lag, and hands each new
/// entry to the node.
/// </summary>
internal sealed class StreamReadLoop
{
    /// <summary>What the node does with a new (deduplicated) entry.</summary>
    public delegate Task EntryHandler(string id, StreamEntry entry);

    private readonly NodeContext _node;
    private readonly RedisEpoch _epoch;
    private readonly Func<IDatabase> _readerDatabase;
    private readonly Func<IDatabase> _commandDatabase;
    private readonly EntryHandler _handle;
    private readonly Action<string> _senderHeard;
    private readonly Action _recovered;
    private readonly CancellationToken _stopping;
    private readonly SequenceTracker _sequences = new();
    private readonly StringCache _strings = new();
    private RedisValue[] _pairs = new RedisValue[16];
    private readonly TaskCompletionSource _positioned = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _firstAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private string _cursor = "";
    private long _lastReadOk;
    private long _lastReadLagMs;
    private long _entriesBehind;

    public StreamReadLoop(
        NodeContext node, RedisEpoch epoch, Func<IDatabase> readerDatabase, Func<IDatabase> commandDatabase,
        EntryHandler handle, Action<string> senderHeard, Action recovered, CancellationToken stopping)
    {
        _node = node;
        _epoch = epoch;
        _readerDatabase = readerDatabase;
        _commandDatabase = commandDatabase;
        _handle = handle;
        _senderHeard = senderHeard;
        _recovered = recovered;
        _stopping = stopping;
    }

    /// <summary>Completes once the reader reads from a concrete position: from then on, whatever any node appends
    /// reaches this node.</summary>
    public Task Positioned => _positioned.Task;

    /// <summary>Completes once the reader is positioned, or its first attempt failed (Redis unreachable at start).</summary>
    public Task FirstAttempt => _firstAttempt.Task;

    public bool IsPositioned => _positioned.Task.IsCompleted;

    /// <summary>Time since the last XREAD completed (with or without entries).</summary>
    public TimeSpan SinceLastRead => Volatile.Read(ref _lastReadOk) == 0 ? TimeSpan.MaxValue : Stopwatch.GetElapsedTime(Volatile.Read(ref _lastReadOk));

    /// <summary>Age of the last entry processed when it was processed.</summary>
    public TimeSpan LastReadLag => TimeSpan.FromMilliseconds(Interlocked.Read(ref _lastReadLagMs));

    /// <summary>Entries in the stream after the cursor, as last sampled.</summary>
    public long EntriesBehind => Interlocked.Read(ref _entriesBehind);

    public async Task RunAsync()
    {
        var db = _readerDatabase();
        var attempt = 0;
        string? readerEpoch = null;
        var blockMs = (long)_node.Options.ReadBlockTime.TotalMilliseconds;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                if (readerEpoch is null || attempt > 0)
                {
                    // First start, or after an error: is this still the Redis (and stream) we were reading?
                    var epoch = await _epoch.RefreshAsync(_stopping);
                    if (readerEpoch is null)
                    {
                        _cursor = await StartPosition.ResolveAsync(_commandDatabase(), _node.Keys, _sequences);
                        Log.ReaderPositioned(_node.Logger, _node.NodeId, _node.Keys.StreamName, _cursor);
                        _positioned.TrySetResult();
                        _firstAttempt.TrySetResult();
                    }
                    else if (epoch != readerEpoch)
                    {
                        // Restarted empty: the old ids mean nothing now.
                        _cursor = StartPosition.AfterEmptyRestart;
                    }
                    readerEpoch = epoch;
                }

                var result = await db.ExecuteAsync("XREAD", "COUNT", _node.Options.ReadCount, "BLOCK", blockMs, "STREAMS", _node.Keys.Stream, _cursor);
                if (attempt > 0)
                {
                    Log.ReadRecovered(_node.Logger, _node.Keys.StreamName, attempt, _cursor);
                    attempt = 0;
                    _recovered();
                }
                Volatile.Write(ref _lastReadOk, Stopwatch.GetTimestamp());
                if (!result.IsNull)
                {
                    await ProcessAsync(result);
                }
            }
            catch (Exception ex) when (!_stopping.IsCancellationRequested && ex is not OperationCanceledException)
            {
                // Whatever failed (Redis, or a reply of an unexpected shape), the loop keeps its cursor and goes on.
                attempt++;
                _firstAttempt.TrySetResult();
                _node.Instruments.ReadErrors.Add(1);
                var delay = Retry.Backoff(attempt);
                Log.ReadFailed(_node.Logger, ex, _node.Keys.StreamName, _cursor, attempt, (int)delay.TotalMilliseconds);
                try
                {
                    await Task.Delay(delay, _stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return; // stopping: the reader's connection was closed under the blocked XREAD
            }
        }
    }

    private async Task ProcessAsync(RedisResult result)
    {
        // XREAD reply: [[stream, [[id, [field, value, ...]], ...]]]
        foreach (var stream in (RedisResult[])result!)
        {
            var parts = (RedisResult[])stream!;
            foreach (var raw in (RedisResult[])parts[1]!)
            {
                var pair = (RedisResult[])raw!;
                var id = pair[0].ToString();
                _cursor = id;
                _node.Instruments.Received.Add(1);
                var flat = (RedisResult[])pair[1]!;
                if (_pairs.Length < flat.Length)
                {
                    _pairs = new RedisValue[flat.Length];
                }
                for (var i = 0; i < flat.Length; i++)
                {
                    _pairs[i] = (RedisValue)flat[i];
                }
                await ProcessEntryAsync(id, flat.Length);
            }
        }
    }

    private async Task ProcessEntryAsync(string id, int pairCount)
    {
        StreamEntry entry;
        try
        {
            entry = StreamEntryFormat.Decode(_pairs.AsSpan(0, pairCount), _strings);
        }
        catch (InvalidDataException ex)
        {
            _node.Instruments.Malformed.Add(1);
            Log.MalformedEntry(_node.Logger, id, _node.Keys.StreamName, ex.Message);
            return;
        }

        RecordLag(id);
        _senderHeard(entry.Node);
        if (entry.Sequence > 0)
        {
            if (!_sequences.Accept(entry.Node, entry.Sequence, entry.SequenceRestarts, out var missing))
            {
                _node.Instruments.Duplicates.Add(1);
                return;
            }
            if (missing > 0)
            {
                _node.Instruments.Gaps.Add(missing);
                Log.GapDetected(_node.Logger, missing, entry.Node, entry.Sequence - missing - 1, entry.Sequence);
            }
        }
        await _handle(id, entry);
    }

    private void RecordLag(string id)
    {
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        if (dash > 0 && long.TryParse(id.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out var ms))
        {
            var lag = Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - ms);
            Interlocked.Exchange(ref _lastReadLagMs, lag);
            _node.Instruments.ReadLag.Record(lag);
        }
    }

    /// <summary>Counts the entries after the cursor (up to 1 000), for the lag gauge; called with each heartbeat.</summary>
    public async Task SampleEntriesBehindAsync()
    {
        const int Cap = 1000;
        var cursor = _cursor;
        if (cursor.Length == 0)
        {
            return;
        }
        var ahead = await _commandDatabase().StreamRangeAsync(_node.Keys.Stream, "(" + cursor, "+", count: Cap);
        Interlocked.Exchange(ref _entriesBehind, ahead.Length);
    }
}
