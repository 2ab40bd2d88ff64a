using System.Text;
using AppHost;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace AppHost.Tests.Infrastructure;

/// <summary>
/// Starts the real app (the AppHost with Redis as a local redis-server, <see cref="NodeCount"/> chat nodes and the
/// balancer) once per test class, waits until every resource is healthy, and disposes it afterwards.
/// Use it as <c>IClassFixture&lt;ChatAppFixture&gt;</c>; derive from it to change the AppHost's configuration
/// (<see cref="AppHostArgs"/>) or the model (<see cref="ConfigureBuilder"/>).
/// </summary>
public class ChatAppFixture : IAsyncLifetime
{
    /// <summary>How long start-up may take before the fixture gives up.</summary>
    public static readonly TimeSpan StartupTimeout = TimeSpan.FromMinutes(3);

    private DistributedApplication? _app;

    /// <summary>The running app.</summary>
    public DistributedApplication App => _app ?? throw new InvalidOperationException("The app is not started.");

    /// <summary>Number of chat nodes this fixture starts.</summary>
    public virtual int NodeCount => 3;

    /// <summary>Resource names of the chat nodes: chatnode-1..N.</summary>
    public IReadOnlyList<string> NodeNames => [.. Enumerable.Range(1, NodeCount).Select(AppHostSettings.ChatNodeResourceName)];

    /// <summary>The balancer's http endpoint (what a browser opens).</summary>
    public Uri BalancerUrl { get; private set; } = null!;

    /// <summary>Configuration passed to the AppHost as command-line arguments (key=value).</summary>
    protected virtual IEnumerable<string> AppHostArgs() =>
    [
        $"{AppHostSettings.ChatNodesKey}={NodeCount}",
        // The tests need a process they can stop, pause and kill: never a container.
        "Redis:Mode=executable",
        "Redis:Persistence=aof",
    ];

    /// <summary>
    /// Changes the model before it is built. By default: no OTLP export (no dashboard runs in tests), and only warnings
    /// in the test log (resource output included); health-check failures while resources start are expected and muted.
    /// </summary>
    protected virtual void ConfigureBuilder(IDistributedApplicationTestingBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        // Configuration, not AddLogging: the AppHost's appsettings.json sets Logging:LogLevel:Default, which would win.
        builder.Configuration["Logging:LogLevel:Default"] = "Warning";
        builder.Configuration["Logging:LogLevel:Microsoft.Extensions.Diagnostics.HealthChecks"] = "None";
        foreach (var project in builder.Resources.OfType<ProjectResource>().ToList())
        {
            // Exporting to an endpoint nobody listens on only slows shutdown.
            builder.CreateResourceBuilder(project).WithEnvironment(context =>
            {
                context.EnvironmentVariables.Remove("OTEL_EXPORTER_OTLP_ENDPOINT");
            });
        }
    }

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        using var startup = new CancellationTokenSource(StartupTimeout);
        var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.AppHost>([.. AppHostArgs()], startup.Token);
        ConfigureBuilder(builder);

        _app = await builder.BuildAsync(startup.Token);
        try
        {
            await _app.StartAsync(startup.Token);
            await WaitUntilHealthyAsync(ResourcesToWaitFor(), startup.Token);
        }
        catch (OperationCanceledException ex) when (startup.IsCancellationRequested)
        {
            throw new TimeoutException($"The app was not healthy within {StartupTimeout}. Resource states:\n{DescribeResources()}", ex);
        }

        BalancerUrl = _app.GetEndpoint(AppHostSettings.LoadBalancerResourceName, "http");
        OnStarted();
    }

    /// <summary>The resources that must be healthy before the tests run: Redis, the chat nodes and the balancer.</summary>
    protected virtual IEnumerable<string> ResourcesToWaitFor() => [AppHostSettings.RedisResourceName, .. NodeNames, AppHostSettings.LoadBalancerResourceName];

    /// <summary>Runs once the app is healthy (e.g. to start watching a resource's log); by default nothing.</summary>
    protected virtual void OnStarted()
    {
    }

    /// <summary>Waits until every named resource reports healthy.</summary>
    public async Task WaitUntilHealthyAsync(IEnumerable<string> resourceNames, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(resourceNames);
        await Task.WhenAll(resourceNames.Select(name => App.ResourceNotifications.WaitForResourceHealthyAsync(name, cancellationToken)));
    }

    /// <summary>One line per resource: name, state, health (for failure messages).</summary>
    public string DescribeResources()
    {
        if (_app is null)
        {
            return "(not built)";
        }

        var text = new StringBuilder();
        var model = _app.Services.GetRequiredService<DistributedApplicationModel>();
        foreach (var resource in model.Resources.Where(r => !r.Name.EndsWith("-rebuilder", StringComparison.Ordinal)))
        {
            text.Append("  ").Append(resource.Name).Append(": ");
            if (_app.ResourceNotifications.TryGetCurrentState(resource.Name, out var state))
            {
                text.Append(state.Snapshot.State?.Text ?? "?").Append(", health ").Append(state.Snapshot.HealthStatus?.ToString() ?? "?");
            }
            else
            {
                text.Append("no state");
            }

            text.AppendLine();
        }

        return text.ToString();
    }

    /// <inheritdoc />
    public virtual async Task DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
