using AppHost.Redis;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;

namespace AppHost.Faults;

/// <summary>
/// The fault buttons of the dashboard: resource commands on <c>redis</c> (freeze, kill its client connections, restart
/// with or without its data) and on each chat node (kill). Each asks for confirmation, logs its start and outcome to the
/// resource's console log (on the dashboard) and to the AppHost's log, and returns its outcome as the command's result
/// message. Tests invoke them by name through <c>ResourceCommandService</c>, the way the dashboard does.
/// </summary>
public static class FaultCommands
{
    /// <summary><c>redis</c>: SIGSTOP, <see cref="FreezeDuration"/>, SIGCONT.</summary>
    public const string FreezeRedis = "redis-freeze";

    /// <summary><c>redis</c>: <c>CLIENT KILL TYPE normal</c> and <c>CLIENT KILL TYPE pubsub</c>.</summary>
    public const string KillRedisClients = "redis-kill-clients";

    /// <summary><c>redis</c>: <c>SHUTDOWN SAVE</c>, <see cref="RestartDownTime"/> down, then start: the data survives, whatever
    /// <c>Redis:Persistence</c> says.</summary>
    public const string RestartRedisKeepingData = "redis-restart-keep-data";

    /// <summary><c>redis</c>: SIGKILL, its data files deleted, <see cref="RestartDownTime"/> down, then start: an empty Redis, as
    /// after a crash without persistence.</summary>
    public const string RestartRedisEmpty = "redis-restart-empty";

    /// <summary>A chat node: SIGKILL to the app's process, no goodbye (unlike Stop, which shuts it down cleanly).</summary>
    public const string KillNode = "chatnode-kill";

    /// <summary>How long <see cref="FreezeRedis"/> keeps Redis frozen.</summary>
    public static readonly TimeSpan FreezeDuration = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long the restart commands keep Redis down: longer than StackExchange.Redis's command timeout (5 s by default),
    /// so sends made meanwhile time out, are retried, and their traces show <c>publish.retry</c> events; a shorter outage
    /// only makes them wait.
    /// </summary>
    public static readonly TimeSpan RestartDownTime = TimeSpan.FromSeconds(6);

    /// <summary>Bound of each wait inside a command (the process to exit, Redis to answer again).</summary>
    internal static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Adds the four Redis fault commands to the local redis-server resource.</summary>
    internal static IResourceBuilder<RedisServerResource> WithRedisFaultCommands(this IResourceBuilder<RedisServerResource> redis)
    {
        var resource = redis.Resource;
        return redis
            .WithFaultCommand(FreezeRedis, "Freeze 5 s", "Pause",
                "Freeze redis-server for 5 s: SIGSTOP, then SIGCONT. Its connections stay open but nothing answers.",
                "Freeze Redis for 5 seconds (SIGSTOP, then SIGCONT)? Sends wait in the nodes' outboxes meanwhile.",
                "Redis is frozen (SIGSTOP) for 5 s...",
                canCancel: true,
                fault => RedisFaults.FreezeAsync(fault, resource))
            .WithFaultCommand(KillRedisClients, "Kill client connections", "PlugDisconnected",
                "CLIENT KILL TYPE normal and TYPE pubsub: every client connection to Redis is cut; clients reconnect.",
                "Kill every client connection to Redis (CLIENT KILL TYPE normal, and pub/sub)?",
                progress: null,
                canCancel: false,
                fault => RedisFaults.KillClientsAsync(fault, resource))
            .WithFaultCommand(RestartRedisKeepingData, "Restart, keep data", "ArrowClockwise",
                "SHUTDOWN SAVE, 6 s down, start again: Redis comes back with its data.",
                "Restart Redis and keep its data (SHUTDOWN SAVE, 6 s down, then start)? Sends made meanwhile are retried.",
                "Redis is restarting with its data...",
                canCancel: false,
                fault => RedisFaults.RestartKeepingDataAsync(fault, resource))
            .WithFaultCommand(RestartRedisEmpty, "Restart empty", "ArrowReset",
                "SIGKILL, delete its data files, 6 s down, start: an empty Redis, as after a crash with no persistence.",
                "Kill Redis (SIGKILL), delete its data and start it empty 6 s later, as after a crash with no persistence?",
                "Redis is restarting empty...",
                canCancel: false,
                fault => RedisFaults.RestartEmptyAsync(fault, resource));
    }

    /// <summary>Adds <see cref="KillNode"/> to a chat node.</summary>
    internal static IResourceBuilder<ProjectResource> WithKillCommand(this IResourceBuilder<ProjectResource> node)
    {
        var name = node.Resource.Name;
        return node.WithFaultCommand(KillNode, "Kill", "DismissCircle",
            "SIGKILL to the node's process: it dies without a goodbye, unlike Stop. Start brings it back.",
            $"Kill {name} (SIGKILL)? It dies without a goodbye: the other nodes drop it after their heartbeat timeout, and its clients reconnect to another node.",
            progress: null,
            canCancel: false,
            fault => NodeFaults.KillAsync(fault, name));
    }

    private static IResourceBuilder<T> WithFaultCommand<T>(
        this IResourceBuilder<T> builder,
        string name,
        string displayName,
        string iconName,
        string description,
        string confirmation,
        string? progress,
        bool canCancel,
        Func<FaultContext, Task<string>> inject)
        where T : IResource
    {
        var resourceName = builder.Resource.Name;
        return builder.WithCommand(
            name,
            displayName,
            async context =>
            {
                var appLogger = context.Services.GetRequiredService<ILoggerFactory>().CreateLogger("ReferenceApp.Faults");
                AppHostLog.FaultCommandStarted(appLogger, displayName, resourceName);
                AppHostLog.FaultCommandStarted(context.Logger, displayName, resourceName);
                var fault = new FaultContext(resourceName, context.Services, context.Logger, context.CancellationToken);
                try
                {
                    var outcome = await inject(fault);
                    AppHostLog.FaultCommandSucceeded(appLogger, displayName, resourceName, outcome);
                    AppHostLog.FaultCommandSucceeded(context.Logger, displayName, resourceName, outcome);
                    return CommandResults.Success(outcome);
                }
#pragma warning disable CA1031 // any failure of a fault is reported as the command's result, never thrown at the dashboard
                catch (Exception ex)
#pragma warning restore CA1031
                {
                    AppHostLog.FaultCommandFailed(appLogger, displayName, resourceName, ex.Message, ex);
                    AppHostLog.FaultCommandFailed(context.Logger, displayName, resourceName, ex.Message, ex);
                    return CommandResults.Failure($"{displayName} on {resourceName} failed: {ex.Message}");
                }
            },
            new CommandOptions
            {
                Description = description,
                ConfirmationMessage = confirmation,
                IconName = iconName,
                IconVariant = IconVariant.Regular,
                Progress = progress is null ? null : new CommandProgressOptions { Message = progress, HideCancelButton = !canCancel },
                UpdateState = state => state.ResourceSnapshot.State?.Text == KnownResourceStates.Running
                    ? ResourceCommandState.Enabled
                    : ResourceCommandState.Disabled,
            });
    }
}

/// <summary>What a fault needs: the resource's name, the app's services, the resource's logger (its console log on the
/// dashboard) and the command's cancellation.</summary>
internal sealed record FaultContext(string ResourceName, IServiceProvider Services, ILogger Logger, CancellationToken CancellationToken)
{
    public ResourceNotificationService Notifications => Services.GetRequiredService<ResourceNotificationService>();

    /// <summary>The pid the orchestrator reports for the running resource; throws when it is not running.</summary>
    public int RunningProcessId()
        => Notifications.TryGetCurrentState(ResourceName, out var state)
            && state.Snapshot.State?.Text == KnownResourceStates.Running
            && ResourceProcess.ReportedProcessId(state.Snapshot) is { } pid
                ? pid
                : throw new InvalidOperationException($"{ResourceName} is not running.");

    /// <summary>Waits, at most <see cref="FaultCommands.StepTimeout"/>, until the resource's process has ended.</summary>
    public async Task WaitUntilEndedAsync()
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(CancellationToken);
        timeout.CancelAfter(FaultCommands.StepTimeout);
        await Notifications.WaitForResourceAsync(ResourceName, e => IsTerminal(e.Snapshot), timeout.Token);
    }

    /// <summary>Starts the resource through the orchestrator and waits, at most <see cref="FaultCommands.StepTimeout"/>,
    /// until it is healthy; returns the new process' pid. A start that fails (the process exits at once: e.g. its port,
    /// free while it was down, was taken for a moment by another socket of the machine) is logged with the process'
    /// state and exit code and tried again, up to three attempts in all: the fault is the downtime, not a Redis that
    /// stays away.</summary>
    /// <remarks>The start command can return before the orchestrator has published the new run's first state, so the
    /// snapshot seen first may still be the ended run's (terminal, with the old pid). Only a snapshot of the new run
    /// counts: one that is not terminal, or that reports another pid. Taking the old run's end for a failed start would
    /// wait for an end that never comes while the new process runs.</remarks>
    public async Task<int> StartAndWaitHealthyAsync()
    {
        const int Attempts = 3;
        var commands = Services.GetRequiredService<ResourceCommandService>();
        for (var attempt = 1; ; attempt++)
        {
            var endedPid = Notifications.TryGetCurrentState(ResourceName, out var ended) ? ResourceProcess.ReportedProcessId(ended.Snapshot) : null;
            var started = await commands.ExecuteCommandAsync(ResourceName, KnownResourceCommands.StartCommand, CancellationToken);
            if (!started.Success)
            {
                throw new InvalidOperationException($"starting {ResourceName} again failed: {started.Message}");
            }

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(CancellationToken);
            timeout.CancelAfter(FaultCommands.StepTimeout);
            var newRun = false;
            var outcome = (await Notifications.WaitForResourceAsync(ResourceName, e =>
            {
                var terminal = IsTerminal(e.Snapshot);
                newRun |= !terminal || ResourceProcess.ReportedProcessId(e.Snapshot) is { } pid && pid != endedPid;
                return newRun && (terminal || (e.Snapshot.State?.Text == KnownResourceStates.Running && e.Snapshot.HealthStatus == HealthStatus.Healthy));
            }, timeout.Token)).Snapshot;
            if (!IsTerminal(outcome))
            {
                return RunningProcessId();
            }

            var state = outcome.State?.Text ?? "unknown";
            var exitCode = outcome.ExitCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none";
            if (attempt == Attempts)
            {
                throw new InvalidOperationException($"{ResourceName} did not come up healthy in {Attempts} starts (last: state {state}, exit code {exitCode}).");
            }

            AppHostLog.RestartAttemptFailed(Logger, ResourceName, attempt, state, exitCode);
        }
    }

    /// <summary>Whether the snapshot is of a process that has ended (or never started).</summary>
    private static bool IsTerminal(CustomResourceSnapshot snapshot)
        => snapshot.State?.Text is { } state && KnownResourceStates.TerminalStates.Contains(state);
}
