using System.Collections.Concurrent;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Microsoft.Extensions.DependencyInjection;

namespace AppHost.Tests.Chaos;

/// <summary>Collects the console output of resources while a test runs: to explain a failure, or to read what a resource
/// reports (the traffic generator's counts).</summary>
internal sealed class ResourceLogCapture : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentQueue<(DateTimeOffset At, string Line)> _entries = new();

    public ResourceLogCapture(DistributedApplication app, IEnumerable<string> resources)
    {
        var logs = app.Services.GetRequiredService<ResourceLoggerService>();
        foreach (var resource in resources)
        {
            _ = Task.Run(async () =>
            {
                try
                {
                    await foreach (var batch in logs.WatchAsync(ResolveResource(app, resource)).WithCancellation(_stop.Token))
                    {
                        foreach (var line in batch)
                        {
                            _entries.Enqueue((DateTimeOffset.UtcNow, resource + ": " + line.Content));
                        }
                    }
                }
                catch (OperationCanceledException)
                {
                }
            });
        }
    }

    public IReadOnlyList<string> Lines => [.. _entries.Select(e => e.Line)];

    /// <summary>The lines with the time they were captured (the backlog of a resource's log: when the capture began).</summary>
    public IReadOnlyList<(DateTimeOffset At, string Line)> Entries => [.. _entries];

    /// <summary>The model's resource of that name (its logs are keyed by the resource, not only by the name).</summary>
    public static IResource ResolveResource(DistributedApplication app, string name)
        => app.Services.GetRequiredService<DistributedApplicationModel>().Resources.Single(r => r.Name == name);

    public void Dispose()
    {
        _stop.Cancel();
        _stop.Dispose();
    }
}
