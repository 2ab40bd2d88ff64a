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
