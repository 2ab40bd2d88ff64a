using System.Diagnostics;
using System.Threading.Channels;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>The node's publishing side: the ordered outbox, the append script, retries, the replay window and the repair of sequences Redis lost.</summary>
internal sealed partial class RedisStreamsBackplane
{
    /// <summary>Appends a sequenced entry through the outbox and returns when it is in the stream. Throws
    /// <see cref="RedisStreamsPublishException"/> when it could not be handed to Redis within PublishTimeout.</summary>
    public async Task PublishAsync(StreamEntry entry, CancellationToken cancellationToken)
    {
        if (_stopped)
        {
            throw new RedisStreamsPublishException("The node is shutting down; the packet was not published.");
        }
        _ = EnsureStarted();

        var activity = BackplaneInstruments.Source.StartActivity("publish " + Keys.StreamName, ActivityKind.Producer);
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "redis");
            activity.SetTag("messaging.destination.name", Keys.StreamName);
            activity.SetTag("messaging.operation.type", "send");
            activity.SetTag("messaging.operation.name", "XADD");
            activity.SetTag("signalr.hub", entry.Hub);
            activity.SetTag("signalr.redis_streams.kind", entry.Kind.ToString());
            activity.SetTag("signalr.redis_streams.node", NodeId);
            entry.TraceParent = activity.Id;
        }

        var item = new OutboxItem(entry, activity);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.PublishTimeout);
        try
        {
            try
            {
                if (!_outbox.Writer.TryWrite(item))
                {
                    activity?.AddEvent(new ActivityEvent("outbox.full"));
                    await _outbox.Writer.WriteAsync(item, timeout.Token);
                }
                Interlocked.Increment(ref _outboxDepth);
            }
            catch (ChannelClosedException)
            {
                throw new RedisStreamsPublishException("The node is shutting down; the packet was not published.");
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
            Instruments.PublishDuration.Record(Stopwatch.GetElapsedTime(item.EnqueuedAt).TotalMilliseconds);
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
            Instruments.PublishFailures.Add(1);
            return new RedisStreamsPublishException(message);
        }
    }

    private async Task PublishLoopAsync()
    {
        var batch = new List<OutboxItem>(MaxBatch);
        var reader = _outbox.Reader;
        try
        {
            // Publish once this node reads the stream (so its own connections get what it sends), or, when the node
            // stops before that, only to drain what is left.
            await Task.WhenAny(_readerReady.Task, reader.Completion).WaitAsync(_stopping.Token);
            while (await reader.WaitToReadAsync(_stopping.Token))
            {
                batch.Clear();
                while (batch.Count < MaxBatch && reader.TryRead(out var item))
                {
                    Interlocked.Decrement(ref _outboxDepth);
                    if (item.TryTake())
                    {
                        item.Entry.Sequence = ++_sequence;
                        item.Fields = StreamEntryFormat.Encode(item.Entry);
                        batch.Add(item);
                    }
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
            var db = _connection!.GetDatabase();
            var tasks = new Task<RedisResult>[batch.Count];
            try
            {
                var epoch = await GetEpochAsync(refresh: false);
                for (var i = next; i < batch.Count; i++)
                {
                    tasks[i] = AppendAsync(db, epoch, batch[i].Entry.Sequence, batch[i].Fields!, force && i == next);
                }
                force = false;
                for (var i = next; i < batch.Count; i++)
                {
                    var result = (RedisResult[])(await tasks[i])!;
                    var code = (int)result[0];
                    if (code is 1 or 0)
                    {
                        var item = batch[i];
                        Remember(item);
                        item.Activity?.SetTag("messaging.message.id", code == 1 ? result[1].ToString() : null);
                        item.Complete();
                        Instruments.Published.Add(1);
                        next = i + 1;
                        continue;
                    }
                    if (code == -1)
                    {
                        await OnEpochMismatchAsync();
                    }
                    else
                    {
                        force = await RepairSequenceAsync(db, (long)result[1], batch[i].Entry.Sequence);
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
                var delay = Backoff(attempt);
                Log.PublishFailed(_logger, ex, batch.Count - next, attempt, (int)delay.TotalMilliseconds);
                Instruments.PublishRetries.Add(batch.Count - next);
                for (var i = next; i < batch.Count; i++)
                {
                    batch[i].Activity?.AddEvent(new ActivityEvent("publish.retry", tags: new ActivityTagsCollection
                    {
                        ["retry.attempt"] = attempt,
                        ["exception.type"] = ex.GetType().FullName,
                        ["exception.message"] = ex.Message,
                    }));
                }
                await Task.Delay(delay, _stopping.Token);
            }
            finally
            {
                ObserveRemaining(tasks, next);
            }
        }
    }

    private Task<RedisResult> AppendAsync(IDatabase db, string epoch, long sequence, NameValueEntry[] fields, bool force)
    {
        var args = new RedisValue[5 + fields.Length * 2 + (force ? 2 : 0)];
        args[0] = epoch;
        args[1] = NodeId;
        args[2] = sequence;
        args[3] = force ? 1 : 0;
        args[4] = _options.MaxLength;
        for (var i = 0; i < fields.Length; i++)
        {
            args[5 + i * 2] = fields[i].Name;
            args[6 + i * 2] = fields[i].Value;
        }
        if (force)
        {
            args[^2] = StreamEntryFormat.SequenceRestartField;
            args[^1] = "1";
        }
        return db.ScriptEvaluateAsync(AppendScript, [Keys.Stream, Keys.Sequences, Keys.Epoch], args);
    }

    private static void ObserveRemaining(Task<RedisResult>[] tasks, int from)
    {
        for (var i = from; i < tasks.Length; i++)
        {
            tasks[i]?.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private void Remember(OutboxItem item)
    {
        var now = Stopwatch.GetTimestamp();
        _recent.Enqueue(new PublishedEntry(item.Entry.Sequence, item.Fields!, now, item.Activity?.Context ?? default));
        var window = _options.ReplayWindow;
        while (_recent.Count > 0 && (_recent.Count > _options.MaxLength || Stopwatch.GetElapsedTime(_recent.Peek().PublishedAt) > window))
        {
            _recent.Dequeue();
        }
        Volatile.Write(ref _recentCount, _recent.Count);
    }

    /// <summary>Redis holds <paramref name="last"/> as this node's last sequence, but <paramref name="sequence"/> is
    /// next: entries were lost (restart without data, or a replica promoted without them). Append them again from the
    /// replay window; returns true when the next append must be forced past a hole the window cannot fill.</summary>
    private async Task<bool> RepairSequenceAsync(IDatabase db, long last, long sequence)
    {
        var missing = _recent.Where(e => e.Sequence > last && e.Sequence < sequence).ToList();
        Log.SequenceRepair(_logger, last, sequence, missing.Count);
        var expected = last + 1;
        var epoch = await GetEpochAsync(refresh: false);
        foreach (var entry in missing)
        {
            var force = entry.Sequence != expected;
            if (force)
            {
                Log.ReplayWindowExceeded(_logger, entry.Sequence - expected);
            }
            using var republish = entry.Context == default
                ? null
                : BackplaneInstruments.Source.StartActivity("republish " + Keys.StreamName, ActivityKind.Producer, entry.Context);
            republish?.SetTag("messaging.system", "redis");
            republish?.SetTag("messaging.destination.name", Keys.StreamName);
            republish?.SetTag("messaging.operation.type", "send");
            republish?.SetTag("signalr.redis_streams.sequence", entry.Sequence);
            var result = (RedisResult[])(await AppendAsync(db, epoch, entry.Sequence, entry.Fields, force))!;
            if ((int)result[0] == -1)
            {
                await OnEpochMismatchAsync();
                return false;
            }
            expected = entry.Sequence + 1;
        }
        if (expected != sequence)
        {
            Log.ReplayWindowExceeded(_logger, sequence - expected);
            return true;
        }
        return false;
    }

    private async Task OnEpochMismatchAsync()
    {
        var before = _knownEpoch;
        await GetEpochAsync(refresh: true);
        if (before is not null && before != _knownEpoch)
        {
            OnRedisRestartedEmpty(before, _knownEpoch!);
        }
    }

    /// <summary>The epoch this node believes Redis holds; with <paramref name="refresh"/> it is read (and set, when
    /// Redis has none) again.</summary>
    private async Task<string> GetEpochAsync(bool refresh)
    {
        if (!refresh && _knownEpoch is { } known)
        {
            return known;
        }
        await _epochLock.WaitAsync(_stopping.Token);
        try
        {
            var db = _connection!.GetDatabase();
            await db.StringSetAsync(Keys.Epoch, Guid.NewGuid().ToString("N"), when: When.NotExists);
            var current = (string?)await db.StringGetAsync(Keys.Epoch) ?? throw new RedisException("The epoch key vanished while it was being read.");
            _knownEpoch = current;
            return current;
        }
        finally
        {
            _epochLock.Release();
        }
    }

    private void OnRedisRestartedEmpty(string oldEpoch, string newEpoch)
    {
        // The reader and the publisher may both notice the same restart: handle it once.
        if (Interlocked.Exchange(ref _handledEpoch, newEpoch) == newEpoch)
        {
            return;
        }
        Log.RedisRestartDetected(_logger, oldEpoch, newEpoch, Volatile.Read(ref _recentCount));
        Instruments.Restarts.Add(1);
        _ = RewriteRegistryAsync();
        // A sequenced marker through the outbox: appending it finds this node's sequence missing in the new Redis and
        // republishes the replay window at once, even when nothing else is being sent.
        _ = PublishMarkerAsync();
    }

    /// <summary>Publishes without making the caller (the reader, typically) wait for Redis; the entry still takes its
    /// place in the ordered outbox at once.</summary>
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

    private async Task PublishMarkerAsync()
    {
        try
        {
            await PublishAsync(new StreamEntry { Kind = EntryKind.Heartbeat, Node = NodeId }, _stopping.Token);
        }
        catch (Exception ex) when (ex is RedisStreamsPublishException or OperationCanceledException)
        {
            Log.HeartbeatFailed(_logger, ex);
        }
    }

    private async Task AppendUnsequencedAsync(EntryKind kind)
    {
        var fields = StreamEntryFormat.Encode(new StreamEntry { Kind = kind, Node = NodeId });
        await _connection!.GetDatabase().StreamAddAsync(Keys.Stream, fields, maxLength: _options.MaxLength, useApproximateMaxLength: true);
    }
}
