using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Appends this node's packets to the stream, in order: a send waits in the <see cref="Outbox"/> (at most
/// <c>PublishTimeout</c>), the publish loop takes batches, appends them with <see cref="IdempotentAppend"/>, retries
/// with backoff while Redis is away, and keeps what Redis confirmed in the <see cref="ReplayWindow"/> to repair a
/// Redis that lost it.
/// </summary>
internal sealed class StreamPublisher
{
    private const int MaxBatch = 64;

    private readonly RedisStreamsOptions _options;
    private readonly RedisStreamsKeys _keys;
    private readonly string _nodeId;
    private readonly ILogger _logger;
    private readonly BackplaneInstruments _instruments;
    private readonly RedisEpoch _epoch;
    private readonly Func<IDatabase> _database;
    private readonly Task _readerPositioned;
    private readonly CancellationToken _stopping;
    private readonly Outbox _outbox;
    private readonly ReplayWindow _window;

    public StreamPublisher(
        RedisStreamsOptions options, RedisStreamsKeys keys, string nodeId, ILogger logger, BackplaneInstruments instruments,
        RedisEpoch epoch, Func<IDatabase> database, Task readerPositioned, CancellationToken stopping)
    {
        _options = options;
        _keys = keys;
        _nodeId = nodeId;
        _logger = logger;
        _instruments = instruments;
        _epoch = epoch;
        _database = database;
        _readerPositioned = readerPositioned;
        _stopping = stopping;
        _outbox = new Outbox(options.OutboxCapacity);
        _window = new ReplayWindow(options.ReplayWindow, options.MaxLength);
    }

    public int OutboxDepth => _outbox.Depth;

    public int ReplayWindowCount => _window.Count;

    /// <summary>Appends a sequenced entry through the outbox and returns when it is in the stream. Throws
    /// <see cref="RedisStreamsPublishException"/> when it could not be handed to Redis within PublishTimeout, or the
    /// node is shutting down.</summary>
    public async Task PublishAsync(StreamEntry entry, CancellationToken cancellationToken)
    {
        var activity = BackplaneInstruments.Source.StartActivity("publish " + _keys.StreamName, ActivityKind.Producer);
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "redis");
            activity.SetTag("messaging.destination.name", _keys.StreamName);
            activity.SetTag("messaging.operation.type", "send");
            activity.SetTag("messaging.operation.name", "XADD");
            activity.SetTag("signalr.hub", entry.Hub);
            activity.SetTag("signalr.redis_streams.kind", entry.Kind.ToString());
            activity.SetTag("signalr.redis_streams.node", _nodeId);
            entry.TraceParent = activity.Id;
        }

        var item = new OutboxItem(entry, activity);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.PublishTimeout);
        try
        {
            try
            {
                await _outbox.AddAsync(item, timeout.Token);
            }
            catch (ChannelClosedException)
            {
                throw ShuttingDown();
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw Fail($"The outbox stayed full for {_options.PublishTimeout} (RedisStreamsOptions.PublishTimeout); the packet was not published.");
            }

            try
            {
                await item.Completion.WaitAsync(timeout.Token);
            }
            catch (OperationCanceledException) when (item.TryAbandon())
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    throw;
                }
                throw Fail($"Redis could not be reached for {_options.PublishTimeout} (RedisStreamsOptions.PublishTimeout); the packet was not published.");
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // Already handed to Redis: it is retried until Redis answers, so wait for it.
                await item.Completion;
            }
            _instruments.PublishDuration.Record(Stopwatch.GetElapsedTime(item.EnqueuedAt).TotalMilliseconds);
        }
        catch (Exception ex) when (activity is not null)
        {
            activity.SetStatus(ActivityStatusCode.Error, ex.Message);
            activity.AddException(ex);
            throw;
        }
        finally
        {
            activity?.Dispose();
        }

        Exception Fail(string message)
        {
            Log.PublishTimedOut(_logger, entry.Kind, _options.PublishTimeout);
            _instruments.PublishFailures.Add(1);
            return new RedisStreamsPublishException(message);
        }
    }

    internal static RedisStreamsPublishException ShuttingDown() => new("The node is shutting down; the packet was not published.");

    /// <summary>Publishes without making the caller (the reader, typically) wait for Redis; the entry still takes its
    /// place in the ordered outbox at once. A failure is logged.</summary>
    public void PublishInBackground(StreamEntry entry) => _ = PublishLoggedAsync(entry);

    private async Task PublishLoggedAsync(StreamEntry entry)
    {
        try
        {
            await PublishAsync(entry, CancellationToken.None);
        }
        catch (RedisStreamsPublishException ex)
        {
            Log.DispatchFailed(_logger, ex, entry.InvocationId, entry.Kind);
        }
    }

    /// <summary>After Redis restarted empty: a sequenced marker through the outbox. Appending it finds this node's
    /// numbers missing in the new Redis and republishes the replay window at once, even when nothing else is sent.</summary>
    public void RepublishSoon() => _ = PublishMarkerAsync();

    private async Task PublishMarkerAsync()
    {
        try
        {
            await PublishAsync(new StreamEntry { Kind = EntryKind.Heartbeat, Node = _nodeId }, _stopping);
        }
        catch (Exception ex) when (ex is RedisStreamsPublishException or OperationCanceledException)
        {
            Log.HeartbeatFailed(_logger, ex);
        }
    }

    /// <summary>Appends an entry that carries no sequence number (heartbeat, goodbye): not ordered, not repaired.</summary>
    public async Task AppendUnsequencedAsync(EntryKind kind)
    {
        var fields = StreamEntryFormat.Encode(new StreamEntry { Kind = kind, Node = _nodeId });
        await _database().StreamAddAsync(_keys.Stream, fields, maxLength: _options.MaxLength, useApproximateMaxLength: true);
    }

    /// <summary>No more sends are accepted; what is queued is still published by the loop.</summary>
    public void CloseOutbox() => _outbox.Close();

    /// <summary>Fails what the loop could not publish before the node stopped.</summary>
    public void FailRemaining() => _outbox.FailRemaining(ShuttingDown());

    /// <summary>The publish loop: from the moment this node reads the stream (so its own connections get what it
    /// sends) until the outbox is closed and drained, or the node stops.</summary>
    public async Task RunAsync()
    {
        var batch = new List<OutboxItem>(MaxBatch);
        try
        {
            // Publish once this node reads the stream, or, when the node stops before that, only to drain what is left.
            await Task.WhenAny(_readerPositioned, _outbox.Completion).WaitAsync(_stopping);
            while (await _outbox.WaitToTakeAsync(_stopping))
            {
                batch.Clear();
                _outbox.TakeBatch(batch, MaxBatch);
                foreach (var item in batch)
                {
                    item.Fields = StreamEntryFormat.Encode(item.Entry);
                }
                if (batch.Count > 0)
                {
                    await PublishBatchAsync(batch);
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        foreach (var item in batch)
        {
            item.Fail(new RedisStreamsPublishException("The node stopped before the packet was confirmed by Redis."));
        }
    }

    private async Task PublishBatchAsync(List<OutboxItem> batch)
    {
        var next = 0;
        var attempt = 0;
        var force = false;
        while (next < batch.Count)
        {
            var db = _database();
            var appends = new Task<AppendResult>[batch.Count];
            try
            {
                var epoch = await _epoch.CurrentAsync(_stopping);
                // Pipelined: every append of the batch is sent before the first reply is awaited.
                for (var i = next; i < batch.Count; i++)
                {
                    appends[i] = IdempotentAppend.AppendAsync(db, _keys, epoch, _nodeId, batch[i].Entry.Sequence, batch[i].Fields!, force && i == next, _options.MaxLength);
                }
                force = false;
                for (var i = next; i < batch.Count; i++)
                {
                    var result = await appends[i];
                    if (result.IsInStream)
                    {
                        var item = batch[i];
                        _window.Add(new PublishedEntry(item.Entry.Sequence, item.Fields!, Stopwatch.GetTimestamp(), item.Activity?.Context ?? default));
                        item.Activity?.SetTag("messaging.message.id", result.EntryId);
                        item.Complete();
                        _instruments.Published.Add(1);
                        next = i + 1;
                        continue;
                    }
                    if (result.Outcome == AppendOutcome.EpochChanged)
                    {
                        await _epoch.RefreshAsync(_stopping);
                    }
                    else
                    {
                        force = await RepairAsync(db, result.LastSequence, batch[i].Entry.Sequence);
                    }
                    break;
                }
                if (attempt > 0 && next > 0)
                {
                    Log.PublishRecovered(_logger, attempt);
                    attempt = 0;
                }
            }
            catch (Exception ex) when (!_stopping.IsCancellationRequested && ex is not OperationCanceledException)
            {
                // Redis unreachable, timed out, or answered an error: the entries stay in order and are retried.
                attempt++;
                var delay = Retry.Backoff(attempt);
                Log.PublishFailed(_logger, ex, batch.Count - next, attempt, (int)delay.TotalMilliseconds);
                _instruments.PublishRetries.Add(batch.Count - next);
                for (var i = next; i < batch.Count; i++)
                {
                    batch[i].Activity?.AddEvent(new ActivityEvent("publish.retry", tags: new ActivityTagsCollection
                    {
                        ["retry.attempt"] = attempt,
                        ["exception.type"] = ex.GetType().FullName,
                        ["exception.message"] = ex.Message,
                    }));
                }
                await Task.Delay(delay, _stopping);
            }
            finally
            {
                ObserveRemaining(appends, next);
            }
        }
    }

    private static void ObserveRemaining(Task<AppendResult>[] appends, int from)
    {
        for (var i = from; i < appends.Length; i++)
        {
            appends[i]?.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>Redis holds <paramref name="last"/> as this node's last number, but <paramref name="sequence"/> is next:
    /// entries were lost (restart without data, or a replica promoted without them). Appends them again from the replay
    /// window; returns true when the next append must be forced past a hole the window cannot fill.</summary>
    private async Task<bool> RepairAsync(IDatabase db, long last, long sequence)
    {
        var plan = _window.PlanRepair(last, sequence);
        Log.SequenceRepair(_logger, last, sequence, plan.Republish.Count);
        if (plan.Lost > 0)
        {
            Log.ReplayWindowExceeded(_logger, plan.Lost);
        }
        var epoch = await _epoch.CurrentAsync(_stopping);
        foreach (var (entry, force) in plan.Republish)
        {
            using var republish = entry.Context == default
                ? null
                : BackplaneInstruments.Source.StartActivity("republish " + _keys.StreamName, ActivityKind.Producer, entry.Context);
            republish?.SetTag("messaging.system", "redis");
            republish?.SetTag("messaging.destination.name", _keys.StreamName);
            republish?.SetTag("messaging.operation.type", "send");
            republish?.SetTag("signalr.redis_streams.sequence", entry.Sequence);
            var result = await IdempotentAppend.AppendAsync(db, _keys, epoch, _nodeId, entry.Sequence, entry.Fields, force, _options.MaxLength);
            if (result.Outcome == AppendOutcome.EpochChanged)
            {
                await _epoch.RefreshAsync(_stopping);
                return false;
            }
        }
        return plan.ForceNext;
    }
}
