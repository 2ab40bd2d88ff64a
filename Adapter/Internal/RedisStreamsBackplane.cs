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
internal sealed partial class RedisStreamsBackplane : IAsyncDisposable
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

    // Start and stop.

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
            if (ReaderReady) // a node that never reached Redis has nobody to say goodbye to
            {
                await AppendUnsequencedAsync(EntryKind.Goodbye).WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
            }
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
