using System.Diagnostics.Metrics;
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using SignalR.RedisStreams;

namespace Benchmarks.Soak;

/// <summary>The hub of a soak node, at <c>/soak</c>: every method sends one numbered message (<see cref="SoakNode.Message"/>:
/// sender, sequence) to one kind of target, and completes when the backplane has accepted it (the entry is in Redis,
/// or, for a connection on this node, written to it).</summary>
public sealed class SoakHub : Hub
{
    public Task All(int sender, long seq) => Clients.All.SendAsync(SoakNode.Message, sender, seq);

    public Task Room(string room, int sender, long seq) => Clients.Group(room).SendAsync(SoakNode.Message, sender, seq);

    public Task ToUser(string user, int sender, long seq) => Clients.User(user).SendAsync(SoakNode.Message, sender, seq);

    public Task Direct(string connectionId, int sender, long seq) => Clients.Client(connectionId).SendAsync(SoakNode.Message, sender, seq);

    public Task Join(string room) => Groups.AddToGroupAsync(Context.ConnectionId, room);
}

/// <summary>The user of a soak connection: its <c>user</c> query-string value.</summary>
internal sealed class SoakUserIdProvider : IUserIdProvider
{
    public string? GetUserId(HubConnectionContext connection) => connection.GetHttpContext()?.Request.Query["user"].ToString();
}

/// <summary>
/// A chat-like node of the soak run, in a process of its own (<c>Benchmarks soak-node &lt;redis&gt; &lt;maxLength&gt;</c>),
/// so that the soak can kill it (SIGKILL), freeze it (SIGSTOP) and measure its memory. It talks to its parent on
/// stdout, one line each: <c>LISTENING &lt;url&gt;</c> once started, <c>LOG &lt;level&gt; &lt;message&gt;</c> for the
/// backplane's log (Information and above) and other warnings, and <c>OUTBOX &lt;peak&gt;</c>, the deepest outbox seen
/// so far, twice a second. It exits when its stdin closes (the parent went away) or after its lifetime.
/// </summary>
internal static class SoakNode
{
    /// <summary>The client method of every soak message: (int sender, long seq).</summary>
    public const string Message = "m";

    public const string StreamName = "soak";

    public const string KeyPrefix = "soak:";

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length < 4
            || !int.TryParse(args[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out var maxLength)
            || !int.TryParse(args[3], NumberStyles.Integer, CultureInfo.InvariantCulture, out var lifetimeMinutes))
        {
            await Console.Error.WriteLineAsync("usage: Benchmarks soak-node <redis connection string> <max length> <lifetime minutes>");
            return 2;
        }

        var redis = args[1];
        // Optional key=value arguments: outbox=<OutboxCapacity>, timeout=<PublishTimeout s>, load=<sends per second>,
        // inflight=<most sends in flight> (a sender inside the node, for the outage-memory run).
        var extra = args.Skip(4).Select(a => a.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => int.Parse(p[1], CultureInfo.InvariantCulture), StringComparer.Ordinal);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("SignalR.RedisStreams", LogLevel.Information);
        builder.Logging.AddProvider(new StdoutLoggerProvider());
        builder.Services.AddSingleton<IUserIdProvider, SoakUserIdProvider>();
        builder.Services.AddSignalR().AddRedisStreams(redis, o =>
        {
            o.StreamName = StreamName;
            o.KeyPrefix = KeyPrefix;
            o.MaxLength = maxLength;
            if (extra.TryGetValue("outbox", out var outbox))
            {
                o.OutboxCapacity = outbox;
            }

            if (extra.TryGetValue("timeout", out var timeout))
            {
                o.PublishTimeout = TimeSpan.FromSeconds(timeout);
            }
        });

        await using var app = builder.Build();
        app.MapHub<SoakHub>("/soak");
        using var lifetime = new CancellationTokenSource(TimeSpan.FromMinutes(lifetimeMinutes));
        await app.StartAsync(lifetime.Token);
        var url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.First()
            ?? throw new InvalidOperationException("Kestrel reported no addresses.");
        Console.Out.WriteLine("LISTENING " + url.TrimEnd('/'));

        var peak = 0L;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == RedisStreamsTelemetry.MeterName && instrument.Name == "signalr.redis_streams.outbox.depth")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<int>((_, value, _, _) =>
        {
            if (value > Interlocked.Read(ref peak))
            {
                Interlocked.Exchange(ref peak, value);
            }
        });
        listener.Start();

        var load = extra.TryGetValue("load", out var rate) ? new LoadSender(app.Services.GetRequiredService<IHubContext<SoakHub>>(), rate, extra.GetValueOrDefault("inflight", 20_000)) : null;
        var loadTask = load?.RunAsync(lifetime.Token) ?? Task.CompletedTask;

        // The parent closing our stdin (or dying) ends the node.
        var stdinClosed = Task.Run(() =>
        {
            while (Console.In.ReadLine() is not null)
            {
            }
        });
        var ticks = 0;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        try
        {
            // Sampling period of the outbox gauge (a measurement interval, not a synchronisation).
            while (!stdinClosed.IsCompleted && await timer.WaitForNextTickAsync(lifetime.Token))
            {
                listener.RecordObservableInstruments();
                if (++ticks % 10 == 0)
                {
                    Console.Out.WriteLine("OUTBOX " + Interlocked.Read(ref peak).ToString(CultureInfo.InvariantCulture));
                    if (load is not null)
                    {
                        Console.Out.WriteLine(load.Describe());
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Lifetime over.
        }

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await app.StopAsync(stop.Token);
        return 0;
    }

    /// <summary>Sends numbered messages to All from inside the node (sender 0) at a fixed rate, with at most a given
    /// number in flight: a send blocked by a full outbox counts as waiting, one that fails with
    /// <see cref="RedisStreamsPublishException"/> as refused.</summary>
    private sealed class LoadSender(IHubContext<SoakHub> hub, int rate, int maxInFlight)
    {
        private long _issued;
        private long _completed;
        private long _refused;
        private long _otherErrors;
        private long _lastCompleted;

        public string Describe() => string.Create(CultureInfo.InvariantCulture,
            $"LOAD issued={Interlocked.Read(ref _issued)} completed={Interlocked.Read(ref _completed)} refused={Interlocked.Read(ref _refused)} " +
            $"other={Interlocked.Read(ref _otherErrors)} lastcompleted={Interlocked.Read(ref _lastCompleted)}");

        public async Task RunAsync(CancellationToken stop)
        {
            using var window = new SemaphoreSlim(maxInFlight, maxInFlight);
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
            var perTick = Math.Max(1, rate / 100);
            long seq = 0;
            try
            {
                while (await timer.WaitForNextTickAsync(stop))
                {
                    for (var i = 0; i < perTick && window.CurrentCount > 0; i++)
                    {
                        await window.WaitAsync(stop);
                        var number = ++seq;
                        Interlocked.Increment(ref _issued);
                        _ = SendAsync(number, window);
                    }
                }
            }
            catch (OperationCanceledException)
            {
                // Lifetime over.
            }
        }

        private async Task SendAsync(long seq, SemaphoreSlim window)
        {
            try
            {
                await hub.Clients.All.SendAsync(Message, 0, seq);
                Interlocked.Increment(ref _completed);
                Interlocked.Exchange(ref _lastCompleted, seq);
            }
            catch (RedisStreamsPublishException)
            {
                Interlocked.Increment(ref _refused);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Interlocked.Increment(ref _otherErrors);
            }
            finally
            {
                try
                {
                    window.Release();
                }
                catch (ObjectDisposedException)
                {
                    // The node is stopping.
                }
            }
        }
    }

    private sealed class StdoutLoggerProvider : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new StdoutLogger();

        public void Dispose()
        {
        }
    }

    private sealed class StdoutLogger : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var line = formatter(state, exception);
            if (exception is not null)
            {
                line += " | " + exception.GetType().Name + ": " + exception.Message;
            }

            Console.Out.WriteLine("LOG " + logLevel + " " + line.ReplaceLineEndings(" "));
        }
    }
}
