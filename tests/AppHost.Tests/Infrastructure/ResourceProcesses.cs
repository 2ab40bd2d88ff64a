using System.Globalization;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;

namespace AppHost.Tests.Infrastructure;

/// <summary>
/// The operating-system processes behind resources, for faults the orchestrator cannot inject (SIGKILL, SIGSTOP).
/// For <c>redis</c> (a local redis-server run as an executable resource) the pid is the redis-server process itself.
/// </summary>
public static class ResourceProcesses
{
    /// <summary>The snapshot property where DCP reports an executable's pid.</summary>
    public const string PidProperty = "executable.pid";

    /// <summary>The pid of the running process behind <paramref name="resourceName"/>, or null when it has none now.</summary>
    public static int? TryGetProcessId(DistributedApplication app, string resourceName)
    {
        ArgumentNullException.ThrowIfNull(app);
        if (!app.ResourceNotifications.TryGetCurrentState(resourceName, out var state))
        {
            return null;
        }

        var value = state.Snapshot.Properties.FirstOrDefault(p => p.Name == PidProperty)?.Value;
        return value switch
        {
            int pid => pid,
            long pid => (int)pid,
            string text when int.TryParse(text, CultureInfo.InvariantCulture, out var pid) => pid,
            _ => null,
        };
    }

    /// <summary>The pid of the running process behind <paramref name="resourceName"/>; waits until it is known.</summary>
    public static async Task<int> GetProcessIdAsync(DistributedApplication app, string resourceName, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(app);
        var resourceEvent = await app.ResourceNotifications.WaitForResourceAsync(
            resourceName,
            e => e.Snapshot.State?.Text == KnownResourceStates.Running && e.Snapshot.Properties.Any(p => p.Name == PidProperty && p.Value is not null),
            cancellationToken);
        return TryGetProcessId(app, resourceEvent.Resource.Name)
            ?? throw new InvalidOperationException($"{resourceName} reports no {PidProperty}.");
    }
}
