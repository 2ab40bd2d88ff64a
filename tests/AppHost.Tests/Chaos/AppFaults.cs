using System.Globalization;
using AppHost.Faults;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using StackExchange.Redis;

namespace AppHost.Tests.Chaos;

/// <summary>Real faults injected into the running app: the orchestrator's stop/start commands, signals to the processes
/// behind resources, and CLIENT KILL on Redis.</summary>
internal static class AppFaults
{
    public const string Redis = "redis";

    /// <summary>Stops Redis through the orchestrator (a clean shutdown) and starts it again.</summary>
    public static async Task StopAndStartAsync(DistributedApplication app, string resource, CancellationToken cancellationToken)
    {
        await ExecuteAsync(app, resource, KnownResourceCommands.StopCommand, cancellationToken);
        await WaitUntilStoppedAsync(app, resource, cancellationToken);
        await StartAsync(app, resource, cancellationToken);
    }

    /// <summary>SIGKILL to the process behind <paramref name="resource"/>, then waits until the orchestrator sees it gone.</summary>
    public static async Task KillAsync(DistributedApplication app, string resource, CancellationToken cancellationToken)
    {
        var pid = await ApplicationProcessIdAsync(app, resource, cancellationToken);
        UnixSignal.Send(pid, UnixSignal.Kill);
        await WaitUntilStoppedAsync(app, resource, cancellationToken);
    }

    /// <summary>SIGKILL to the redis-server of a Redis resource (see <see cref="RedisServerProcessIdAsync"/>), then waits
    /// until the orchestrator sees it gone.</summary>
    public static async Task KillRedisServerAsync(DistributedApplication app, string resource, CancellationToken cancellationToken)
    {
        var pid = await RedisServerProcessIdAsync(app, resource, cancellationToken);
        UnixSignal.Send(pid, UnixSignal.Kill);
        await WaitUntilStoppedAsync(app, resource, cancellationToken);
    }

    /// <summary>Freezes the redis-server of a Redis resource (SIGSTOP) until <paramref name="until"/> completes, then
    /// thaws it (SIGCONT), also when <paramref name="until"/> fails.</summary>
    public static async Task<T> PauseRedisServerUntilAsync<T>(DistributedApplication app, string resource, Func<Task<T>> until, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(until);
        var pid = await RedisServerProcessIdAsync(app, resource, cancellationToken);
        UnixSignal.Send(pid, UnixSignal.Stop);
        try
        {
            return await until();
        }
        finally
        {
            UnixSignal.Send(pid, UnixSignal.Continue);
        }
    }

    /// <summary>The redis-server process of a Redis resource: the pid the orchestrator reports for the executable, not
    /// its deepest descendant (a master forks a child for a replica's full sync, which is not the server).</summary>
    public static async Task<int> RedisServerProcessIdAsync(DistributedApplication app, string resource, CancellationToken cancellationToken)
    {
        var pid = await ResourceProcess.ReportedProcessIdAsync(app.ResourceNotifications, resource, cancellationToken);
        var name = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/comm").Trim();
        return name.StartsWith("redis-server", StringComparison.Ordinal)
            ? pid
            : throw new InvalidOperationException($"The process {pid} of {resource} is '{name}', not redis-server.");
    }

    /// <summary>Starts a stopped resource and waits until it is healthy; should it not become healthy in time, the
    /// failure says what it was doing (<see cref="StartDiagnostics"/>, with its console output).</summary>
    /// <remarks>The wait does not stop at a state in which the resource is unavailable: the start command returns
    /// before the orchestrator reports the resource starting, so the state the wait sees first can still be the
    /// stopped one the start was issued from (the likely cause of a fresh-clone CI failure of a cluster test: "Stopped waiting for
    /// resource 'redis-1' to become healthy because it failed to start", 8 s into the test, with the kill before it
    /// already seen through). A start that really fails runs into the deadline, and the diagnostics say why.</remarks>
    public static async Task StartAsync(DistributedApplication app, string resource, CancellationToken cancellationToken)
    {
        await ExecuteAsync(app, resource, KnownResourceCommands.StartCommand, cancellationToken);
        try
        {
            await app.ResourceNotifications.WaitForResourceHealthyAsync(resource, WaitBehavior.WaitOnResourceUnavailable, cancellationToken);
        }
        catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
        {
            throw new InvalidOperationException(
                $"{resource} was started but did not become healthy in time. What it was doing:{Environment.NewLine}{await StartDiagnostics.DescribeAsync(app, resource)}", ex);
        }
    }

    /// <summary>Freezes the process behind <paramref name="resource"/> (SIGSTOP) for <paramref name="duration"/>, then thaws it.</summary>
    public static async Task PauseAsync(DistributedApplication app, string resource, TimeSpan duration, CancellationToken cancellationToken)
    {
        var pid = await ApplicationProcessIdAsync(app, resource, cancellationToken);
        UnixSignal.Send(pid, UnixSignal.Stop);
        try
        {
            // The length of the freeze is the fault itself, not a synchronisation.
            await Task.Delay(duration, cancellationToken);
        }
        finally
        {
            UnixSignal.Send(pid, UnixSignal.Continue);
        }
    }

    /// <summary>CLIENT KILL TYPE normal: every client connection to Redis (the nodes' readers and writers) is cut.</summary>
    public static async Task<long> KillRedisClientsAsync(DistributedApplication app, CancellationToken cancellationToken)
    {
        var connectionString = await app.GetConnectionStringAsync(Redis, cancellationToken)
            ?? throw new InvalidOperationException("redis has no connection string.");
        var options = ConfigurationOptions.Parse(connectionString);
        options.AllowAdmin = true;
        await using var admin = await ConnectionMultiplexer.ConnectAsync(options);
        var server = admin.GetServers()[0];
        var killed = await server.ExecuteAsync("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
        return (long)killed;
    }

    /// <summary>The process that runs the resource's code (the app, not the <c>dotnet run</c> wrapper of a project).</summary>
    public static Task<int> ApplicationProcessIdAsync(DistributedApplication app, string resource, CancellationToken cancellationToken)
        => ResourceProcess.ApplicationProcessIdAsync(app.ResourceNotifications, resource, cancellationToken);

    private static async Task ExecuteAsync(DistributedApplication app, string resource, string command, CancellationToken cancellationToken)
    {
        var result = await app.ResourceCommands.ExecuteCommandAsync(resource, command, cancellationToken);
        if (!result.Success)
        {
            throw new InvalidOperationException($"{command} on {resource} failed: {result.Message}");
        }
    }

    private static Task<ResourceEvent> WaitUntilStoppedAsync(DistributedApplication app, string resource, CancellationToken cancellationToken)
        => app.ResourceNotifications.WaitForResourceAsync(resource,
            e => e.Snapshot.State?.Text is { } state && (state == KnownResourceStates.Exited || state == KnownResourceStates.Finished || state == KnownResourceStates.FailedToStart),
            cancellationToken);
}
