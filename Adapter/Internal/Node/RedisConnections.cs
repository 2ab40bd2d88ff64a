using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>The node's Redis connections: one for commands (the application's shared multiplexer when it has one)
/// and one of its own for each stream's blocking reader (<c>StreamCount</c>), whose XREAD BLOCK would stall every other
/// command to the same server on a shared one (on a cluster, two streams' masters can be the same server after a
/// failover).</summary>
internal sealed class RedisConnections(RedisStreamsOptions options, IServiceProvider services, ILogger logger, string nodeId) : IAsyncDisposable
{
    private IConnectionMultiplexer? _commands;
    private IConnectionMultiplexer[]? _readers;
    private bool _ownsCommands;

    public IConnectionMultiplexer Commands => _commands ?? throw new InvalidOperationException("The node is not connected yet.");

    /// <summary>The dedicated connection of the reader of stream <paramref name="shard"/>.</summary>
    public IConnectionMultiplexer Reader(int shard) => Volatile.Read(ref _readers)?[shard] ?? throw new InvalidOperationException("The node is not connected yet.");

    /// <summary>Opens them all (without waiting for Redis to answer: callers retry until it does).</summary>
    public async Task ConnectAsync()
    {
        (_commands, _ownsCommands) = await CreateAsync(forReader: false, 0);
        var readers = new IConnectionMultiplexer[Math.Max(1, options.StreamCount)];
        for (var k = 0; k < readers.Length; k++)
        {
            (readers[k], _) = await CreateAsync(forReader: true, k);
        }
        Volatile.Write(ref _readers, readers);
    }

    /// <summary>Ends the blocked XREADs at once (when the node stops).</summary>
    public Task CloseReaderAsync() => _readers is { } readers
        ? Task.WhenAll(readers.Select(r => r.CloseAsync(allowCommandsToComplete: false)))
        : Task.CompletedTask;

    private async Task<(IConnectionMultiplexer Connection, bool Owned)> CreateAsync(bool forReader, int shard)
    {
        var log = new LoggerTextWriter(logger);
        if (options.ConnectionFactory is { } factory)
        {
            return (await factory(log), true);
        }

        ConfigurationOptions configuration;
        if (options.Configuration is { } configured)
        {
            configuration = configured.Clone();
        }
        else if (services.GetService<IConnectionMultiplexer>() is { } shared)
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
        // Socket I/O on the .NET thread pool rather than StackExchange.Redis's shared pool of dedicated threads (unless the
        // configuration names a socket manager): with a blocking reader per node and stream, that pool's queue lock was
        // where nearly all of the process's lock contention came from (a contention trace of the fixed-rate benchmark
        // cell: 7.0 contentions per broadcast, 0.2 with this), and its threads' hand-offs added to every reply's wait.
        configuration.SocketManager ??= SocketManager.ThreadPool;
        if (forReader)
        {
            // The blocking read must end (ReadBlockTime) well before the connection's own timeout. Not much more: with
            // ReadBlockTime + 30 s, a Redis restart with its data stalled every reader for about 15 s (the outage
            // benchmark counted most deliveries after the fault as lost). Replies of huge entries that take longer
            // than this to arrive are handled by the reader asking for fewer entries after a timeout.
            var needed = (int)options.ReadBlockTime.TotalMilliseconds + 5000;
            configuration.AsyncTimeout = Math.Max(configuration.AsyncTimeout, needed);
            configuration.SyncTimeout = Math.Max(configuration.SyncTimeout, needed);
            configuration.ClientName = "signalr-streams-reader-" + nodeId + (shard == 0 ? "" : "-" + shard.ToString(CultureInfo.InvariantCulture));
        }
        else
        {
            configuration.ClientName ??= "signalr-streams-" + nodeId;
        }
        return (await ConnectionMultiplexer.ConnectAsync(configuration, log), true);
    }

    public async ValueTask DisposeAsync()
    {
        if (_ownsCommands && _commands is not null)
        {
            await _commands.DisposeAsync();
        }
        foreach (var reader in _readers ?? [])
        {
            await reader.DisposeAsync();
        }
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
}
