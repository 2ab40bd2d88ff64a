using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The node: one per process, shared by every hub. Builds the parts, starts and stops them in order, and routes each
/// entry the reader hands over to the one part or hub manager that handles its kind.
/// <para>A packet's path: a manager's send → <see cref="PublishAsync"/> → <see cref="StreamPublisher"/> (outbox,
/// routing to a channel, <see cref="IdempotentAppend"/>) → Redis: the shared stream, or the inbox of the one node the
/// packet is for → on every node (shared) or that node (inbox) <see cref="StreamReadLoop"/> (decode, dedup) →
/// <see cref="HandleEntryAsync"/> → the hub's manager → its connections.</para>
/// </summary>
internal sealed class BackplaneNode : IAsyncDisposable
{
    private readonly RedisStreamsOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, IHubManager> _managers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _unknownHubs = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();

    // Stops the heartbeats before the goodbye: a heartbeat appended after it would make the others hear this node
    // again (they ignore it now, but they need not see it at all).
    private readonly CancellationTokenSource _leaving = new();
    private readonly Lock _startLock = new();
    private readonly RedisConnections _connections;
    private readonly RedisEpoch[] _epochs;

    private Task? _startTask;
    private Task[]? _readLoops;
    private Task? _publishLoop;
    private Task? _heartbeatLoop;
    private Task? _topologyLoop;
    private readonly TopologySignal _topology = new();
    private volatile bool _stopped;

    public BackplaneNode(IOptions<RedisStreamsOptions> options, ILoggerFactory loggerFactory, IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _options = options.Value;
        _logger = loggerFactory.CreateLogger("SignalR.RedisStreams.Backplane");
        NodeId = _options.NodeIdForTests ?? Guid.NewGuid().ToString("N")[..16];
        // One stream per shard (StreamCount); this node sends on one of them, and reads them all.
        ShardKeys = StreamShards.Keys(_options.KeyPrefix, _options.StreamName, Math.Max(1, _options.StreamCount));
        SendShard = StreamShards.ShardOf(NodeId, ShardKeys.Length);
        Keys = ShardKeys[0];
        var meterFactory = services.GetService<IMeterFactory>() ?? new StandaloneMeterFactory();
        // The gauges read parts created below; they are observed only once the node runs.
        Instruments = new BackplaneInstruments(meterFactory, NodeId, () => Publisher!.OutboxDepth, () => Membership!.LiveCount, () => Reader!.PacketsBehind);

        _connections = new RedisConnections(_options, services, _logger, NodeId);
        _epochs = [.. ShardKeys.Select(k => new RedisEpoch(k, CommandDatabase, OnRedisRestartedEmpty))];
        Membership = new NodeMembership(NodeId, _options, _logger, OnNodeGone);
        Acks = new AckTracker();
        Registry = new ConnectionRegistry(Keys, NodeId, CommandDatabaseAsync, Membership.IsGone, _logger);
        var readers = new StreamReadLoop[ShardKeys.Length];
        for (var k = 0; k < readers.Length; k++)
        {
            var shard = k;
            var shardKeys = ShardKeys[k];
            readers[k] = new StreamReadLoop(new NodeContext(NodeId, _options, shardKeys, _logger, Instruments) { Topology = _topology }, _epochs[k],
                () => _connections.Reader(shard).GetDatabase(), CommandDatabase, (id, entry, writes) => HandleEntryAsync(id, entry, shardKeys, writes),
                Membership.Heard, shard == SendShard ? OnSendStreamReadAgain : Membership.ResetClock, _stopping.Token);
        }
        Reader = new ShardReaders(readers);
        Publisher = new StreamPublisher(new NodeContext(NodeId, _options, ShardKeys[SendShard], _logger, Instruments) { Topology = _topology }, _epochs[SendShard],
            CommandDatabase, Registry, Reader.Positioned, _stopping.Token);
    }

    public string NodeId { get; }

    /// <summary>The keys of the first stream, which also hold the connection registry and the recovery sessions.</summary>
    public RedisStreamsKeys Keys { get; }

    /// <summary>The keys of every stream (one per shard, <c>StreamCount</c>).</summary>
    public RedisStreamsKeys[] ShardKeys { get; }

    /// <summary>The stream this node appends everything it sends to.</summary>
    public int SendShard { get; }
    public RedisStreamsOptions Options => _options;
    public BackplaneInstruments Instruments { get; }
    public ShardReaders Reader { get; }

    /// <summary>How many times a reload of the Redis Cluster's topology found one of this node's streams' slots moved
    /// to another master (<see cref="TopologySignal"/>).</summary>
    public int SlotMoves => _topology.Moves;
    public StreamPublisher Publisher { get; }
    public NodeMembership Membership { get; }
    public ConnectionRegistry Registry { get; }
    public AckTracker Acks { get; }

    public void Register(string hubName, IHubManager manager)
    {
        _managers[hubName] = manager;
        EnsureStarted();
    }

    public void Unregister(string hubName) => _managers.TryRemove(hubName, out _);

    // ------------------------------------------------------------------ sending

    /// <summary>Appends a packet to the stream; returns when it is there (see <see cref="StreamPublisher.PublishAsync"/>).</summary>
    public Task PublishAsync(StreamEntry entry, CancellationToken cancellationToken)
    {
        if (_stopped)
        {
            return Task.FromException(StreamPublisher.ShuttingDown());
        }
        EnsureStarted();
        return Publisher.PublishAsync(entry, cancellationToken);
    }

    /// <summary>Publishes without waiting for Redis (from the reader); a failure is logged.</summary>
    public void PublishInBackground(StreamEntry entry)
    {
        if (!_stopped)
        {
            Publisher.PublishInBackground(entry);
        }
    }

    // ------------------------------------------------------------------ receiving: the one router of entry kinds

    private async Task HandleEntryAsync(string id, StreamEntry entry, RedisStreamsKeys stream, CoalescedWrites writes)
    {
        switch (entry.Kind)
        {
            case EntryKind.Heartbeat:
                return; // hearing the sender was the point
            case EntryKind.Goodbye:
                Membership.SaidGoodbye(entry.Node);
                return;
            case EntryKind.Ack:
                if (entry.TargetNode == NodeId)
                {
                    Acks.Complete(entry.AckId);
                }
                return;
            default:
                break; // every other kind is a hub's: its manager handles it
        }

        if (!_managers.TryGetValue(entry.Hub, out var manager))
        {
            // A hub this node does not serve (another app's, a hub mapped on other nodes only, or a forged entry).
            Instruments.UnknownHub.Add(1);
            if (_unknownHubs.Count < 100 && _unknownHubs.TryAdd(entry.Hub, true))
            {
                Log.UnknownHub(_logger, entry.Hub);
            }
            return;
        }
        if (entry.TargetNode.Length > 0 && entry.TargetNode != NodeId)
        {
            return; // addressed to another node
        }

        using var activity = StartConsumerActivity(id, entry, stream);
        try
        {
            var reached = await manager.DispatchAsync(entry, activity, writes);
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

    private Activity? StartConsumerActivity(string id, StreamEntry entry, RedisStreamsKeys stream)
    {
        if (!BackplaneInstruments.Source.HasListeners())
        {
            return null;
        }
        ActivityContext.TryParse(entry.TraceParent, null, isRemote: true, out var parent);
        var activity = BackplaneInstruments.Source.StartActivity("receive " + stream.StreamName, ActivityKind.Consumer, parent);
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "redis");
            activity.SetTag("messaging.destination.name", stream.StreamName);
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

    // ------------------------------------------------------------------ what one part tells the others

    private void OnRedisRestartedEmpty(string oldEpoch, string newEpoch)
    {
        Log.RedisRestartDetected(_logger, oldEpoch, newEpoch, Publisher.ReplayWindowCount);
        Instruments.Restarts.Add(1);
        _ = Registry.RewriteAsync(_managers.Values.SelectMany(m => m.LocalConnectionIds).ToList());
        Publisher.RepublishSoon();
    }

    /// <summary>The reader of the stream this node sends on read again after an error. The Redis (or, on a cluster,
    /// the master) it reads now may be a replica promoted without this node's last appends, with the same epoch:
    /// every channel this node wrote to is checked against Redis's sequences and repaired from the replay window now,
    /// not only when this node next sends on it.</summary>
    private void OnSendStreamReadAgain()
    {
        Membership.ResetClock();
        Publisher.RepublishSoon();
    }

    private void OnNodeGone(string node)
    {
        Acks.FailNode(node);
        foreach (var manager in _managers.Values)
        {
            manager.NodeGone(node);
        }
        _ = Registry.ForgetNodeAsync(node);
    }

    // ------------------------------------------------------------------ start and stop

    /// <summary>Connects and starts the loops, once.</summary>
    public Task EnsureStarted()
    {
        lock (_startLock)
        {
            // The connections and loops outlive whoever starts them (the host, or a first send or connection). On the
            // thread pool, so that a connection factory of the options runs with a clean context, not a suppressed flow.
            return _startTask ??= Background.Run(StartCoreAsync);
        }
    }

    private async Task StartCoreAsync()
    {
        Log.Starting(_logger, NodeId, Keys.StreamName, ShardKeys[SendShard].StreamName, SendShard, ShardKeys.Length);
        await _connections.ConnectAsync();
        _readLoops = Reader.Run();
        _publishLoop = Task.Run(Publisher.RunAsync);
        _heartbeatLoop = Task.Run(() => Membership.RunHeartbeatsAsync(Reader.Positioned, AnnounceAsync, () => Reader.SinceLastRead, _leaving.Token));
        _topologyLoop = Task.Run(() => new ClusterTopologyWatch(
            [
                ("commands", () => _connections.Commands, [.. ShardKeys.Select(k => k.Stream)]),
                .. ShardKeys.Select((keys, shard) => ("reader " + shard, (Func<IConnectionMultiplexer>)(() => _connections.Reader(shard)), new[] { keys.Stream })),
            ], _topology, _logger).RunAsync(_stopping.Token));
    }

    private async Task AnnounceAsync()
    {
        await Publisher.AppendUnsequencedAsync(EntryKind.Heartbeat);
        // This node's inbox lives while the node does (and a while after its last write, see InboxLifetime).
        var db = CommandDatabase();
        await Task.WhenAll(ShardKeys.SelectMany(keys => new[]
        {
            db.KeyExpireAsync(keys.Inbox(NodeId), RedisStreamsKeys.InboxLifetime),
            db.KeyExpireAsync(keys.InboxSequences(NodeId), RedisStreamsKeys.InboxLifetime),
        }));
        await Reader.SamplePacketsBehindAsync();
    }

    /// <summary>The host's start: returns once the reader reads from a concrete position, so that no client can connect
    /// before this node hears every send; or, when Redis is unreachable, once the first attempt failed (the node then
    /// starts anyway, and its connections wait in <see cref="WhenReadingAsync"/>).</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await EnsureStarted().WaitAsync(cancellationToken);
        await Reader.FirstAttempt.WaitAsync(cancellationToken);
    }

    /// <summary>A connection arrives: complete once the reader is positioned (at once, normally). While Redis is
    /// unreachable it waits, at most <c>PublishTimeout</c>, then throws <see cref="TimeoutException"/>: SignalR then
    /// closes the connection with an error, and the client reconnects (through a balancer, possibly elsewhere).</summary>
    public Task WhenReadingAsync(CancellationToken connectionAborted)
    {
        var positioned = Reader.Positioned;
        return positioned.IsCompleted ? Task.CompletedTask : WaitForReaderAsync(positioned, connectionAborted);
    }

    private async Task WaitForReaderAsync(Task positioned, CancellationToken connectionAborted)
    {
        _ = EnsureStarted();
        try
        {
            await positioned.WaitAsync(_options.PublishTimeout, connectionAborted);
        }
        catch (TimeoutException)
        {
            Log.ConnectionRefused(_logger, _options.PublishTimeout);
            throw new TimeoutException(
                $"The Redis Streams backplane could not read its stream within {_options.PublishTimeout} (RedisStreamsOptions.PublishTimeout): " +
                "the connection is refused rather than left to miss messages (Redis unreachable?).");
        }
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

        Log.Stopping(_logger, NodeId, Publisher.OutboxDepth);
        Publisher.CloseOutbox();
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
        // No heartbeat after the goodbye: the heartbeat loop stops now.
        await _leaving.CancelAsync();
        try
        {
            if (Reader.IsPositioned) // a node that never reached Redis has nobody to say goodbye to
            {
                // An announce already under way finishes first.
                await Task.WhenAny(_heartbeatLoop!, Task.Delay(TimeSpan.FromSeconds(2), cancellationToken));
                await Publisher.AppendUnsequencedAsync(EntryKind.Goodbye).WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
                // Nobody addresses a node that said goodbye: its inbox can go now; with connection-state recovery,
                // once its connections' sessions can no longer be recovered (a replay reads it).
                // One inbox per stream; each one's two keys share a slot (a delete of keys of several slots fails on a cluster).
                var db = CommandDatabase();
                Task gone = Task.WhenAll(ShardKeys.Select(Task (keys) =>
                {
                    RedisKey[] inbox = [keys.Inbox(NodeId), keys.InboxSequences(NodeId)];
                    return _options.ConnectionStateRecovery
                        ? Task.WhenAll(inbox.Select(k => db.KeyExpireAsync(k, _options.MaxDisconnectionDuration + TimeSpan.FromMinutes(1))))
                        : db.KeyDeleteAsync(inbox);
                }));
                await gone.WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
            }
        }
        catch (Exception ex) when (ex is RedisException or RedisCommandException or TimeoutException or OperationCanceledException)
        {
            // RedisCommandException: on a cluster mid-failover the client may still map a slot to a demoted master.
            Log.HeartbeatFailed(_logger, ex);
        }
        await _stopping.CancelAsync();
        // The reader may be blocked in XREAD for up to ReadBlockTime: closing its connection ends that at once.
        await _connections.CloseReaderAsync();
        foreach (var loop in _readLoops!.Append(_publishLoop).Append(_heartbeatLoop).Append(_topologyLoop))
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
        Publisher.FailRemaining();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        await _connections.DisposeAsync();
        _stopping.Dispose();
        _leaving.Dispose();
        _topology.Dispose();
        foreach (var epoch in _epochs)
        {
            epoch.Dispose();
        }
        Instruments.Meter.Dispose();
    }

    private IDatabase CommandDatabase() => _connections.Commands.GetDatabase();

    /// <summary>The command connection, once the node has connected (a manager used before the host started waits).</summary>
    public async ValueTask<IDatabase> CommandDatabaseAsync()
    {
        var start = EnsureStarted();
        if (!start.IsCompletedSuccessfully)
        {
            await start;
        }
        return CommandDatabase();
    }

    /// <summary>Used when the host has no IMeterFactory (the manager built outside a host).</summary>
    private sealed class StandaloneMeterFactory : IMeterFactory
    {
        public Meter Create(MeterOptions options) => new(options);

        public void Dispose() { }
    }
}
