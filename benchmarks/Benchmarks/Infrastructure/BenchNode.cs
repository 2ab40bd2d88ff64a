using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RedisChannel = StackExchange.Redis.RedisChannel;

namespace Benchmarks.Infrastructure;

/// <summary>One in-process Kestrel server on 127.0.0.1 (port 0) with SignalR (JSON), <see cref="BenchHub"/> at
/// <c>/hub</c> and one of the two backplanes, or none (a single server).</summary>
internal sealed class BenchNode : IAsyncDisposable
{
    private static readonly TimeSpan StartStopTimeout = TimeSpan.FromSeconds(15);

    private readonly WebApplication _app;

    private BenchNode(int index, WebApplication app, string url)
    {
        Index = index;
        _app = app;
        HubUrl = url + "/hub";
        HubContext = app.Services.GetRequiredService<IHubContext<BenchHub>>();
    }

    public int Index { get; }

    public string HubUrl { get; }

    public IHubContext<BenchHub> HubContext { get; }

    /// <summary>The host's meter factory: our backplane's instruments of this node come from it.</summary>
    public IMeterFactory MeterFactory => _app.Services.GetRequiredService<IMeterFactory>();

    /// <summary>Builds and starts a node. <paramref name="name"/> isolates the cluster in the shared Redis: our stream
    /// name and key prefix, or Microsoft's channel prefix.</summary>
    public static async Task<BenchNode> StartAsync(Backplane backplane, int index, string redisConnectionString, string name, LogSink log,
        Action<int, SignalR.RedisStreams.RedisStreamsOptions>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = StartStopTimeout);
        // The harness, not each node, owns the process: a node's default console lifetime would take SIGINT and SIGTERM
        // for itself (stopping that node and keeping the process alive), so Ctrl+C or `kill` would not end a run.
        builder.Services.AddSingleton<IHostLifetime, HarnessOwnedLifetime>();
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("SignalR.RedisStreams", LogLevel.Information);
        builder.Logging.AddFilter("Microsoft.AspNetCore.SignalR.StackExchangeRedis", LogLevel.Information);
        var prefix = backplane switch
        {
            Backplane.RedisStreams => "ours",
            Backplane.MicrosoftPubSub => "ms",
            _ => "solo",
        };
        builder.Logging.AddProvider(log.ProviderFor(backplane, $"{prefix}{index}"));

        var signalr = builder.Services.AddSignalR();
        switch (backplane)
        {
            case Backplane.RedisStreams:
                signalr.AddRedisStreams(redisConnectionString, o =>
                {
                    o.StreamName = name;
                    o.KeyPrefix = "bench:";
                    configure?.Invoke(index, o);
                });
                break;
            case Backplane.MicrosoftPubSub:
                signalr.AddStackExchangeRedis(redisConnectionString, o => o.Configuration.ChannelPrefix = RedisChannel.Literal(name));
                break;
            case Backplane.None:
                // SignalR's DefaultHubLifetimeManager: this server's connections only.
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(backplane));
        }

        var app = builder.Build();
        app.MapHub<BenchHub>("/hub");
        using var timeout = new CancellationTokenSource(StartStopTimeout);
        await app.StartAsync(timeout.Token);

        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses
            ?? throw new InvalidOperationException("Kestrel reported no addresses.");
        return new BenchNode(index, app, addresses.First().TrimEnd('/'));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(StartStopTimeout);
            await _app.StopAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            // Bounded stop: go on disposing.
        }
        finally
        {
            await _app.DisposeAsync();
        }
    }
}

/// <summary>A host lifetime that leaves the process's signals alone (see <see cref="BenchNode.StartAsync"/>).</summary>
internal sealed class HarnessOwnedLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
