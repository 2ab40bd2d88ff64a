using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// One per process: the node. It owns the Redis connections, the ordered outbox and its publisher, the blocking
/// reader of the stream, deduplication and gap detection, membership (heartbeats), acknowledgements and the
/// connection registry. Hub lifetime managers register with it by hub name.
/// </summary>
internal sealed class RedisStreamsBackplane : IAsyncDisposable
{
    /// <summary>Appends one sequenced entry atomically, idempotently and in per-node order.
    /// KEYS: stream, sequence hash, epoch. ARGV: epoch, node, sequence, force (1 = accept a jump), max length, field/value pairs.
    /// Returns {1, id} appended, {0, last} already there, {-1, epoch} Redis holds another epoch (restarted empty),
    /// {-2, last} Redis is missing this node's earlier entries (lost data).</summary>
    private const string AppendScript = """
        local e = redis.call('GET', KEYS[3])
        if e ~= ARGV[1] then return {-1, e or ''} end
        local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
        local seq = tonumber(ARGV[3])
        if seq <= last then return {0, last} end
        if seq ~= last + 1 and ARGV[4] ~= '1' then return {-2, last} end
        redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
        return {1, redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 6))}
        """;

    private const int MaxBatch = 64;

    private readonly RedisStreamsOptions _options;
    private readonly ILogger _logger;
    private readonly IServiceProvider _services;
    private readonly Channel<OutboxItem> _outbox;
    private readonly ConcurrentDictionary<string, IBackplaneHub> _hubs = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _membersLastSeen = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _lastSequence = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, (TaskCompletionSource Tcs, string Node)> _acks = new();
    private readonly Queue<PublishedEntry> _recent = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _readerReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly SemaphoreSlim _epochLock = new(1, 1);
    private readonly Lock _startLock = new();

    private Task? _startTask;
    private Task? _readLoop;
    private Task? _publishLoop;
    private Task? _heartbeatLoop;
    private IConnectionMultiplexer? _connection;
    private IConnectionMultiplexer? _readerConnection;
    private bool _ownsConnection;
    private string? _knownEpoch;
    private string? _handledEpoch;
    private long _sequence;
    private long _nextAckId;
    private long _nextInvocationId;
    private int _outboxDepth;
    private int _recentCount;
    private long _lastReadOk;
    private long _lastReadLagMs;
    private long _entriesBehind;
    private string _cursor = "";
    private bool _stopped;

    public RedisStreamsBackplane(IOptions<RedisStreamsOptions> options, ILoggerFactory loggerFactory, IServiceProvider services)
    {
        _options = options.Value;
        _logger = loggerFactory.CreateLogger("SignalR.RedisStreams.Backplane");
        _services = services;
        NodeId = Guid.NewGuid().ToString("N")[..16];
        Keys = new RedisStreamsKeys(_options.KeyPrefix, _options.StreamName);
        _outbox = Channel.CreateBounded<OutboxItem>(new BoundedChannelOptions(_options.OutboxCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        var meterFactory = services.GetService<IMeterFactory>() ?? new StandaloneMeterFactory();
        Instruments = new BackplaneInstruments(meterFactory, NodeId, () => Volatile.Read(ref _outboxDepth),
            () => LiveNodeCount, () => Interlocked.Read(ref _entriesBehind));
    }

    public string NodeId { get; }
    public RedisStreamsKeys Keys { get; }
    public RedisStreamsOptions Options => _options;
    public BackplaneInstruments Instruments { get; }
    public IConnectionMultiplexer? Connection => _connection;

    /// <summary>Nodes heard from within the heartbeat timeout (this one included once its reader saw its own heartbeat).</summary>
    public int LiveNodeCount => _membersLastSeen.Count;

    public IReadOnlyCollection<string> LiveNodes => (IReadOnlyCollection<string>)_membersLastSeen.Keys;

    /// <summary>Time since the reader last completed an XREAD (with or without entries).</summary>
    public TimeSpan SinceLastRead => Volatile.Read(ref _lastReadOk) == 0 ? TimeSpan.MaxValue : Stopwatch.GetElapsedTime(Volatile.Read(ref _lastReadOk));

    public TimeSpan LastReadLag => TimeSpan.FromMilliseconds(Interlocked.Read(ref _lastReadLagMs));

    public bool ReaderReady => _readerReady.Task.IsCompleted;

    public int OutboxDepth => Volatile.Read(ref _outboxDepth);

    public void Register(string hubName, IBackplaneHub hub)
    {
        _hubs[hubName] = hub;
        EnsureStarted();
    }

    public void Unregister(string hubName) => _hubs.TryRemove(hubName, out _);

    public string NewInvocationId() => NodeId + "." + Interlocked.Increment(ref _nextInvocationId).ToString(CultureInfo.InvariantCulture);

    // ---------------------------------------------------------------- start / stop

    public Task EnsureStarted()
    {
        lock (_startLock)
        {
            return _startTask ??= StartCoreAsync();
        }
    }

    /// <summary>Resolves when this node reads the stream (so that what it publishes reaches its own connections too).</summary>
    public Task WhenReaderReady(CancellationToken cancellationToken) => _readerReady.Task.WaitAsync(cancellationToken);

    private async Task StartCoreAsync()
    {
        Log.Starting(_logger, NodeId, Keys.StreamName);
        (_connection, _ownsConnection) = await CreateConnectionAsync(forReader: false);
        (_readerConnection, _) = await CreateConnectionAsync(forReader: true);
        _readLoop = Task.Run(ReadLoopAsync);
        _publishLoop = Task.Run(PublishLoopAsync);
        _heartbeatLoop = Task.Run(HeartbeatLoopAsync);
    }

    private async Task<(IConnectionMultiplexer Connection, bool Owned)> CreateConnectionAsync(bool forReader)
    {
        var log = new LoggerTextWriter(_logger);
        if (_options.ConnectionFactory is { } factory)
        {
            return (await factory(log), true);
        }

        ConfigurationOptions configuration;
        if (_options.Configuration is { } configured)
        {
            configuration = configured.Clone();
        }
        else if (_services.GetService<IConnectionMultiplexer>() is { } shared)
        {
            if (!forReader)
            {
                return (shared, false);
            }
            configuration = ConfigurationOptions.Parse(shared.Configuration);
        }
        else
        {
            configuration = ConfigurationOptions.Parse("localhost:6379");
        }

        configuration.AbortOnConnectFail = false;
        if (forReader)
        {
            // The reader blocks in XREAD on its own connection, never on the shared one.
            var needed = (int)_options.ReadBlockTime.TotalMilliseconds + 5000;
            configuration.AsyncTimeout = Math.Max(configuration.AsyncTimeout, needed);
            configuration.SyncTimeout = Math.Max(configuration.SyncTimeout, needed);
            configuration.ClientName = "signalr-streams-reader-" + NodeId;
        }
        else
        {
            configuration.ClientName ??= "signalr-streams-" + NodeId;
        }
        return (await ConnectionMultiplexer.ConnectAsync(configuration, log), true);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_startTask is null || _stopped)
        {
            return;
        }
        _stopped = true;
        try
        {
            await _startTask.WaitAsync(cancellationToken);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            return;
        }

        Log.Stopping(_logger, NodeId, OutboxDepth);
        _outbox.Writer.TryComplete();
        // Let what was sent before the stop go out, for a bounded time, then say goodbye.
        using var drain = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        drain.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            await _publishLoop!.WaitAsync(drain.Token);
        }
        catch (OperationCanceledException)
        {
        }
        try
        {
            await AppendUnsequencedAsync(EntryKind.Goodbye).WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or OperationCanceledException)
        {
            Log.HeartbeatFailed(_logger, ex);
        }
        await _stopping.CancelAsync();
        // The reader may be blocked in XREAD for up to ReadBlockTime: closing its connection ends that at once.
        await _readerConnection!.CloseAsync(allowCommandsToComplete: false);
        foreach (var loop in new[] { _readLoop, _publishLoop, _heartbeatLoop })
        {
            try
            {
                await loop!.WaitAsync(TimeSpan.FromSeconds(5), cancellationToken);
            }
#pragma warning disable CA1031 // a loop's last error while stopping changes nothing: it was logged where it happened
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }
        while (_outbox.Reader.TryRead(out var item))
        {
            if (item.TryTake())
            {
                item.Fail(new RedisStreamsPublishException("The node is shutting down; the packet was not published."));
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        if (_ownsConnection && _connection is not null)
        {
            await _connection.DisposeAsync();
        }
        if (_readerConnection is not null)
        {
            await _readerConnection.DisposeAsync();
        }
        _stopping.Dispose();
        _epochLock.Dispose();
        Instruments.Meter.Dispose();
    }

    // ---------------------------------------------------------------- publishing

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
            await _readerReady.Task.WaitAsync(_stopping.Token);
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

    // ---------------------------------------------------------------- reading

    private async Task ReadLoopAsync()
    {
        var db = _readerConnection!.GetDatabase();
        var attempt = 0;
        string? readerEpoch = null;
        var blockMs = (long)_options.ReadBlockTime.TotalMilliseconds;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                if (readerEpoch is null || attempt > 0)
                {
                    // First start, or after an error: is this still the Redis (and stream) we were reading?
                    var epoch = await GetEpochAsync(refresh: true);
                    if (readerEpoch is null)
                    {
                        _cursor = await ResolveStartAsync();
                        Log.ReaderPositioned(_logger, NodeId, Keys.StreamName, _cursor);
                        // From a concrete id on, whatever this node appends will be read: publishing may begin.
                        _readerReady.TrySetResult();
                    }
                    else if (epoch != readerEpoch)
                    {
                        // Restarted empty: the old ids mean nothing now; read the new stream from its start.
                        OnRedisRestartedEmpty(readerEpoch, epoch);
                        _cursor = "0-0";
                    }
                    readerEpoch = epoch;
                }

                var result = await db.ExecuteAsync("XREAD", "COUNT", _options.ReadCount, "BLOCK", blockMs, "STREAMS", Keys.Stream, _cursor);
                if (attempt > 0)
                {
                    Log.ReadRecovered(_logger, Keys.StreamName, attempt, _cursor);
                    attempt = 0;
                    ResetMembershipClock();
                }
                Volatile.Write(ref _lastReadOk, Stopwatch.GetTimestamp());
                _readerReady.TrySetResult();
                if (!result.IsNull)
                {
                    await ProcessReadResultAsync(result);
                }
            }
            catch (Exception ex) when (!_stopping.IsCancellationRequested && ex is not OperationCanceledException)
            {
                // Whatever failed (Redis, or a reply of an unexpected shape), the loop keeps its cursor and goes on.
                attempt++;
                Instruments.ReadErrors.Add(1);
                var delay = Backoff(attempt);
                Log.ReadFailed(_logger, ex, Keys.StreamName, _cursor, attempt, (int)delay.TotalMilliseconds);
                try
                {
                    await Task.Delay(delay, _stopping.Token);
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

    /// <summary>Atomically: the stream's last entry id, and every node's last appended sequence number at that point.</summary>
    private const string StartScript = """
        local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
        local id = '0-0'
        if #last > 0 then id = last[1][1] end
        return {id, redis.call('HGETALL', KEYS[2])}
        """;

    /// <summary>A concrete id to read after: the stream's last entry now (never '$', which would skip entries added
    /// between two reads), or the start of an empty stream. The senders' sequence numbers at that very point become the
    /// baseline of gap detection, so that a hole is noticed even in the first entry read from a sender.</summary>
    private async Task<string> ResolveStartAsync()
    {
        var result = (RedisResult[])(await _connection!.GetDatabase().ScriptEvaluateAsync(StartScript, [Keys.Stream, Keys.Sequences]))!;
        var sequences = (RedisResult[])result[1]!;
        for (var i = 0; i + 1 < sequences.Length; i += 2)
        {
            var node = (string)sequences[i]!;
            var sequence = (long)sequences[i + 1];
            _lastSequence.AddOrUpdate(node, sequence, (_, known) => Math.Max(known, sequence));
        }
        return (string)result[0]!;
    }

    private async Task ProcessReadResultAsync(RedisResult result)
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
                Instruments.Received.Add(1);
                var flat = (RedisResult[])pair[1]!;
                var fields = new NameValueEntry[flat.Length / 2];
                for (var i = 0; i < fields.Length; i++)
                {
                    fields[i] = new NameValueEntry((RedisValue)flat[2 * i], (RedisValue)flat[2 * i + 1]);
                }
                await ProcessEntryAsync(id, fields);
            }
        }
    }

    internal async Task ProcessEntryAsync(string id, NameValueEntry[] fields)
    {
        StreamEntry entry;
        try
        {
            entry = StreamEntryFormat.Decode(fields);
        }
        catch (InvalidDataException ex)
        {
            Instruments.Malformed.Add(1);
            Log.MalformedEntry(_logger, id, Keys.StreamName, ex.Message);
            return;
        }

        RecordLag(id);
        Seen(entry.Node);
        if (entry.Sequence > 0 && !Deduplicate(entry))
        {
            return;
        }

        switch (entry.Kind)
        {
            case EntryKind.Heartbeat:
                return;
            case EntryKind.Goodbye:
                if (entry.Node != NodeId)
                {
                    RemoveNode(entry.Node, "said goodbye");
                }
                return;
            case EntryKind.Ack:
                if (entry.TargetNode == NodeId && _acks.TryRemove(entry.AckId, out var ack))
                {
                    ack.Tcs.TrySetResult();
                }
                return;
            default:
                break;
        }

        if (!_hubs.TryGetValue(entry.Hub, out var hub))
        {
            return; // a hub this node does not serve
        }
        if (entry.TargetNode.Length > 0 && entry.TargetNode != NodeId)
        {
            return; // addressed to another node
        }

        using var activity = StartConsumerActivity(id, entry);
        try
        {
            var reached = await hub.DispatchAsync(entry, activity);
            activity?.SetTag("signalr.redis_streams.connections_reached", reached);
            if (reached > 0)
            {
                Instruments.Dispatched.Add(reached);
            }
        }
        catch (Exception ex)
        {
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            Log.DispatchFailed(_logger, ex, id, entry.Kind);
        }
    }

    private Activity? StartConsumerActivity(string id, StreamEntry entry)
    {
        if (!BackplaneInstruments.Source.HasListeners())
        {
            return null;
        }
        ActivityContext.TryParse(entry.TraceParent, null, isRemote: true, out var parent);
        var activity = BackplaneInstruments.Source.StartActivity("receive " + Keys.StreamName, ActivityKind.Consumer, parent);
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "redis");
            activity.SetTag("messaging.destination.name", Keys.StreamName);
            activity.SetTag("messaging.operation.type", "process");
            activity.SetTag("messaging.operation.name", "XREAD");
            activity.SetTag("messaging.message.id", id);
            activity.SetTag("signalr.hub", entry.Hub);
            activity.SetTag("signalr.redis_streams.kind", entry.Kind.ToString());
            activity.SetTag("signalr.redis_streams.node", NodeId);
            activity.SetTag("signalr.redis_streams.sender", entry.Node);
            activity.SetTag("signalr.redis_streams.sequence", entry.Sequence);
        }
        return activity;
    }

    private void RecordLag(string id)
    {
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        if (dash > 0 && long.TryParse(id.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out var ms))
        {
            var lag = Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - ms);
            Interlocked.Exchange(ref _lastReadLagMs, lag);
            Instruments.ReadLag.Record(lag);
        }
    }

    /// <summary>True when the entry is new; false for a duplicate (same sender, sequence already processed). Counts gaps.</summary>
    private bool Deduplicate(StreamEntry entry)
    {
        var last = _lastSequence.GetValueOrDefault(entry.Node);
        if (entry.Sequence <= last)
        {
            Instruments.Duplicates.Add(1);
            return false;
        }
        // A sender never seen (not in the baseline taken at start) appended everything after our start position, from
        // its first number on; unless its sequence restarted after Redis lost data.
        if (entry.Sequence > last + 1 && (last > 0 || !entry.SequenceRestarts))
        {
            var missing = entry.Sequence - last - 1;
            Instruments.Gaps.Add(missing);
            Log.GapDetected(_logger, missing, entry.Node, last, entry.Sequence);
        }
        _lastSequence[entry.Node] = entry.Sequence;
        return true;
    }

    // ---------------------------------------------------------------- membership

    private void Seen(string node)
    {
        var now = Stopwatch.GetTimestamp();
        if (_membersLastSeen.TryAdd(node, now))
        {
            _goneNodes.TryRemove(node, out _);
            if (node != NodeId)
            {
                Log.NodeJoined(_logger, node);
            }
        }
        else
        {
            _membersLastSeen[node] = now;
        }
    }

    /// <summary>After the reader was cut off, nobody could be heard: give every node a fresh timeout.</summary>
    private void ResetMembershipClock()
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var node in _membersLastSeen.Keys)
        {
            _membersLastSeen[node] = now;
        }
    }

    /// <summary>Starts tracking a node we are about to wait on, so that it is declared gone if it never speaks.</summary>
    public void ExpectNode(string node) => _membersLastSeen.TryAdd(node, Stopwatch.GetTimestamp());

    private readonly ConcurrentDictionary<string, bool> _goneNodes = new(StringComparer.Ordinal);

    private void RemoveNode(string node, string reason)
    {
        if (!_membersLastSeen.TryRemove(node, out _))
        {
            return;
        }
        _goneNodes[node] = true;
        Log.NodeGone(_logger, node, reason);
        foreach (var (ackId, ack) in _acks)
        {
            if (ack.Node == node && _acks.TryRemove(ackId, out _))
            {
                ack.Tcs.TrySetException(new IOException($"Node '{node}' went away before acknowledging."));
            }
        }
        foreach (var hub in _hubs.Values)
        {
            hub.OnNodeGone(node);
        }
        _ = ForgetConnectionsOfAsync(node);
    }

    private async Task HeartbeatLoopAsync()
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval);
        try
        {
            await _readerReady.Task.WaitAsync(_stopping.Token);
            do
            {
                try
                {
                    await AppendUnsequencedAsync(EntryKind.Heartbeat);
                    await SampleEntriesBehindAsync();
                }
                catch (Exception ex) when (IsRetryable(ex))
                {
                    Log.HeartbeatFailed(_logger, ex);
                }

                // Only judge others while this node can hear them.
                if (SinceLastRead < _options.ReadBlockTime + TimeSpan.FromSeconds(2))
                {
                    var now = Stopwatch.GetTimestamp();
                    foreach (var (node, lastSeen) in _membersLastSeen)
                    {
                        if (node != NodeId && Stopwatch.GetElapsedTime(lastSeen, now) > _options.HeartbeatTimeout)
                        {
                            RemoveNode(node, $"silent for more than {_options.HeartbeatTimeout}");
                        }
                    }
                }
            }
            while (await timer.WaitForNextTickAsync(_stopping.Token));
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    private async Task SampleEntriesBehindAsync()
    {
        const int Cap = 1000;
        var cursor = _cursor;
        if (cursor.Length == 0)
        {
            return;
        }
        var ahead = await _connection!.GetDatabase().StreamRangeAsync(Keys.Stream, "(" + cursor, "+", count: Cap);
        Interlocked.Exchange(ref _entriesBehind, ahead.Length);
    }

    // ---------------------------------------------------------------- acknowledgements

    public (long AckId, Task Acknowledged) CreateAck(string targetNode)
    {
        var id = Interlocked.Increment(ref _nextAckId);
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _acks[id] = (tcs, targetNode);
        return (id, tcs.Task);
    }

    public void ForgetAck(long ackId) => _acks.TryRemove(ackId, out _);

    // ---------------------------------------------------------------- connection registry

    /// <summary>The command connection, once the node has connected (it connects at host start; a manager used before
    /// that waits for it).</summary>
    private async ValueTask<IDatabase> DatabaseAsync()
    {
        if (_connection is null)
        {
            await EnsureStarted();
        }
        return _connection!.GetDatabase();
    }

    public async Task RegisterConnectionAsync(string connectionId)
    {
        try
        {
            await (await DatabaseAsync()).HashSetAsync(Keys.Connections, connectionId, NodeId);
        }
        catch (Exception ex) when (IsRetryable(ex))
        {
            Log.RegistryFailed(_logger, ex);
        }
    }

    public async Task UnregisterConnectionAsync(string connectionId)
    {
        try
        {
            await (await DatabaseAsync()).HashDeleteAsync(Keys.Connections, connectionId);
        }
        catch (Exception ex) when (IsRetryable(ex))
        {
            Log.RegistryFailed(_logger, ex);
        }
    }

    /// <summary>The node holding the connection, or null when no live node does.</summary>
    public async Task<string?> FindConnectionOwnerAsync(string connectionId)
    {
        var owner = (string?)await (await DatabaseAsync()).HashGetAsync(Keys.Connections, connectionId);
        if (owner is null || _goneNodes.ContainsKey(owner))
        {
            return null;
        }
        return owner;
    }

    private async Task RewriteRegistryAsync()
    {
        try
        {
            var entries = _hubs.Values.SelectMany(h => h.LocalConnectionIds).Select(id => new HashEntry(id, NodeId)).ToArray();
            if (entries.Length > 0)
            {
                await _connection!.GetDatabase().HashSetAsync(Keys.Connections, entries);
            }
        }
        catch (Exception ex) when (IsRetryable(ex))
        {
            Log.RegistryFailed(_logger, ex);
        }
    }

    private async Task ForgetConnectionsOfAsync(string node)
    {
        try
        {
            var db = _connection!.GetDatabase();
            await foreach (var entry in db.HashScanAsync(Keys.Connections, pageSize: 500))
            {
                if (entry.Value == node)
                {
                    await db.HashDeleteAsync(Keys.Connections, entry.Name);
                }
            }
        }
        catch (Exception ex) when (IsRetryable(ex))
        {
            Log.RegistryFailed(_logger, ex);
        }
    }

    // ---------------------------------------------------------------- helpers

    internal static bool IsRetryable(Exception ex)
        => ex is RedisException or TimeoutException or IOException or ObjectDisposedException;

    private static TimeSpan Backoff(int attempt)
    {
        var ms = Math.Min(2000, 50 * (1 << Math.Min(attempt - 1, 6)));
        return TimeSpan.FromMilliseconds(ms / 2 + Random.Shared.Next(ms / 2 + 1));
    }

    /// <summary>Sends the multiplexer's connect log to our logger at debug level.</summary>
    private sealed class LoggerTextWriter(ILogger logger) : StringWriter(CultureInfo.InvariantCulture)
    {
        public override void WriteLine(string? value)
        {
            if (logger.IsEnabled(LogLevel.Debug))
            {
#pragma warning disable CA1848, CA2254 // pass-through of the multiplexer's own lines
                logger.LogDebug(value);
#pragma warning restore CA1848, CA2254
            }
        }
    }

    /// <summary>Used when the host has no IMeterFactory (the manager built outside a host).</summary>
    private sealed class StandaloneMeterFactory : IMeterFactory
    {
        public Meter Create(MeterOptions options) => new(options);

        public void Dispose() { }
    }
}
