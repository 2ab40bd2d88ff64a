using System.Globalization;

namespace AppHost.Faults;

/// <summary>
/// The operating-system process behind a running resource, for the faults the orchestrator has no command for
/// (SIGSTOP, SIGKILL). The orchestrator reports the pid of the process it started in the snapshot property
/// <see cref="PidProperty"/>: for an executable (redis-server) that is the process itself; a project is started as
/// <c>dotnet run</c>, whose child (the deepest descendant) is the app: signalling the wrapper would freeze or kill it and
/// leave the app running.
/// </summary>
public static class ResourceProcess
{
    /// <summary>The snapshot property where the orchestrator reports an executable's or project's pid.</summary>
    public const string PidProperty = "executable.pid";

    /// <summary>The pid the orchestrator reports for <paramref name="snapshot"/>, or null.</summary>
    public static int? ReportedProcessId(CustomResourceSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        var value = snapshot.Properties.FirstOrDefault(p => p.Name == PidProperty)?.Value;
        return value switch
        {
            int pid => pid,
            long pid => (int)pid,
            string text when int.TryParse(text, CultureInfo.InvariantCulture, out var pid) => pid,
            _ => null,
        };
    }

    /// <summary>The pid the orchestrator reports for <paramref name="resourceName"/>; waits until it runs and has one.</summary>
    public static async Task<int> ReportedProcessIdAsync(ResourceNotificationService notifications, string resourceName, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(notifications);
        var resourceEvent = await notifications.WaitForResourceAsync(
            resourceName,
            e => e.Snapshot.State?.Text == KnownResourceStates.Running && ReportedProcessId(e.Snapshot) is not null,
            cancellationToken);
        return ReportedProcessId(resourceEvent.Snapshot)!.Value;
    }

    /// <summary>The process that runs the resource's code: the reported process, or its deepest descendant.</summary>
    public static async Task<int> ApplicationProcessIdAsync(ResourceNotificationService notifications, string resourceName, CancellationToken cancellationToken)
        => ApplicationProcessId(await ReportedProcessIdAsync(notifications, resourceName, cancellationToken));

    /// <summary>The deepest descendant of <paramref name="reportedPid"/> (itself when it has no child).</summary>
    public static int ApplicationProcessId(int reportedPid)
    {
        var pid = reportedPid;
        while (Children(pid).Select(c => (int?)c).FirstOrDefault() is { } child)
        {
            pid = child;
        }

        return pid;
    }

    /// <summary>True while a process with that pid exists and is not a zombie.</summary>
    public static bool IsAlive(int pid) => State(pid) is not (null or "Z" or "X");

    /// <summary>The state letter of the process in <c>/proc/pid/stat</c>: <c>T</c> while stopped (SIGSTOP), <c>S</c>/<c>R</c>
    /// while it runs; null when it is gone.</summary>
    public static string? State(int pid)
    {
        try
        {
            // "pid (comm) S ...": the state letter follows the command name's closing parenthesis.
            var text = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            return text[(text.LastIndexOf(')') + 2)..].Split(' ')[0];
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    private static IEnumerable<int> Children(int pid)
    {
        var file = $"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/task/{pid.ToString(CultureInfo.InvariantCulture)}/children";
        if (!File.Exists(file))
        {
            return [];
        }

        return File.ReadAllText(file).Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => int.Parse(p, CultureInfo.InvariantCulture));
    }
}
