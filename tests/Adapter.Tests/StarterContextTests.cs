using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using SignalR.RedisStreams.Tests.Infrastructure;

namespace SignalR.RedisStreams.Tests;

/// <summary>
/// The node's long-lived work (connections, reader, publisher, heartbeats) does not carry the async-local state of
/// whoever started it: a host started inside a logging scope and an <see cref="Activity"/> must not stamp that scope and
/// that trace on every line its loops log for the rest of its life (nor make that Activity the implicit parent of what
/// they trace). Seen on the reader's "reads stream … from entry …" line, which the reader loop writes once positioned.
/// </summary>
public sealed class StarterContextTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>
{
    private const string StarterScope = "the starter's scope";

    private static readonly Action<ILogger, Exception?> Started = LoggerMessage.Define(LogLevel.Warning, new EventId(1000, "Started"), "started");

    [Fact]
    public async Task The_readers_log_carries_neither_the_starters_logging_scope_nor_its_trace()
    {
        using var source = new ActivitySource("SignalR.RedisStreams.Tests.Starter");
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == source.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        ActivitySource.AddActivityListener(listener);

        var records = new RecordingLoggerProvider();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("SignalR.RedisStreams", LogLevel.Information);
        builder.Logging.Configure(o => o.ActivityTrackingOptions = ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId);
        builder.Logging.AddProvider(records);
        var id = TestCluster.NewIsolationId();
        builder.Services.AddSignalR().AddRedisStreams(redis.Server.ConnectionString, o => TestCluster.ApplyTestDefaults(o, id));
        // No hub is mapped: mapping one resolves the lifetime manager, which starts the node there and then, before the
        // host starts. Here the host's start starts it (its hosted service), inside the starter's scope and Activity.
        await using var app = builder.Build();

        var starter = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Starter");
        string traceId;
        using (var activity = source.StartActivity("start the host"))
        using (starter.BeginScope(StarterScope))
        {
            Assert.NotNull(activity);
            traceId = activity.TraceId.ToString();
            using var timeout = new CancellationTokenSource(Eventually.DefaultTimeout);
            await app.StartAsync(timeout.Token);
            // The check of the check: what is logged here, in the starter's own flow, does carry both.
            Started(starter, null);
        }

        await Eventually.TrueAsync(() => records.Snapshot().Any(r => r.EventId == 2), "the reader to log that it is positioned");
        var positioned = records.Snapshot().First(r => r.EventId == 2);
        Assert.StartsWith("Node ", positioned.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(positioned.Scopes, s => s.Contains(StarterScope, StringComparison.Ordinal));
        Assert.DoesNotContain(positioned.Scopes, s => s.Contains(traceId, StringComparison.Ordinal));

        var started = records.Snapshot().Single(r => r.Message == "started");
        Assert.Contains(started.Scopes, s => s.Contains(StarterScope, StringComparison.Ordinal));
        Assert.Contains(started.Scopes, s => s.Contains(traceId, StringComparison.Ordinal));

        await app.StopAsync();
    }

    private sealed record Record(string Category, int EventId, string Message, IReadOnlyList<string> Scopes);

    /// <summary>Keeps every record with the scopes it was logged in (as the logger factory hands them to providers that
    /// support external scopes: the scopes begun on any of its loggers, and the Activity it tracks).</summary>
    private sealed class RecordingLoggerProvider : ILoggerProvider, ISupportExternalScope
    {
        private readonly List<Record> _records = [];
        private IExternalScopeProvider _scopes = new LoggerExternalScopeProvider();

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

        public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

        public List<Record> Snapshot()
        {
            lock (_records)
            {
                return [.. _records];
            }
        }

        public void Dispose()
        {
        }

        private sealed class Logger(RecordingLoggerProvider provider, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => provider._scopes.Push(state);

            public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var scopes = new List<string>();
                provider._scopes.ForEachScope((scope, list) => list.Add(scope?.ToString() ?? ""), scopes);
                lock (provider._records)
                {
                    provider._records.Add(new Record(category, eventId.Id, formatter(state, exception), scopes));
                }
            }
        }
    }
}
