using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>One real Kestrel server on 127.0.0.1 (port 0) with SignalR (JSON and MessagePack), the Redis Streams
/// backplane, <see cref="TestHub"/> at <c>/hub</c> and <see cref="QueryStringUserIdProvider"/>.</summary>
public sealed class TestNode : IAsyncDisposable
{
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    private readonly WebApplication _app;

    private TestNode(int index, WebApplication app, string url)
    {
        Index = index;
        _app = app;
        Url = url;
        HubContext = app.Services.GetRequiredService<IHubContext<TestHub>>();
    }

    /// <summary>The node's index in its cluster.</summary>
    public int Index { get; }

    /// <summary>The base address Kestrel bound, e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public string Url { get; }

    /// <summary>The hub's address on this node.</summary>
    public string HubUrl => Url + "/hub";

    /// <summary>This node's hub context: sends and client results that start on this node.</summary>
    public IHubContext<TestHub> HubContext { get; }

    /// <summary>The node's services.</summary>
    public IServiceProvider Services => _app.Services;

    /// <summary>False once <see cref="StopAsync"/> ran.</summary>
    public bool IsRunning { get; private set; }

    /// <summary>Builds and starts a node that uses the backplane on <paramref name="redisConnectionString"/>.</summary>
    public static async Task<TestNode> StartAsync(int index, string redisConnectionString, Action<RedisStreamsOptions> configure, ITestOutputHelper? output)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = StopTimeout);
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("SignalR.RedisStreams", LogLevel.Information);
        if (output is not null)
        {
            builder.Logging.AddProvider(new XunitLoggerProvider(output, $"node{index}"));
        }

        builder.Services.AddSingleton<IUserIdProvider, QueryStringUserIdProvider>();
        builder.Services
            .AddSignalR(o => o.EnableDetailedErrors = true)
            .AddMessagePackProtocol()
            .AddRedisStreams(redisConnectionString, configure);

        var app = builder.Build();
        app.MapHub<TestHub>("/hub");
        using var timeout = new CancellationTokenSource(Eventually.DefaultTimeout);
        await app.StartAsync(timeout.Token);

        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses
            ?? throw new InvalidOperationException("Kestrel reported no addresses.");
        var url = addresses.First().TrimEnd('/');
        return new TestNode(index, app, url) { IsRunning = true };
    }

    /// <summary>Shuts the node down cleanly (its connections close, its backplane says goodbye if it does that).</summary>
    public async Task StopAsync()
    {
        if (!IsRunning)
        {
            return;
        }

        IsRunning = false;
        using var timeout = new CancellationTokenSource(StopTimeout);
        await _app.StopAsync(timeout.Token);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync();
        }
        finally
        {
            await _app.DisposeAsync();
        }
    }
}
