using System.Diagnostics;
using System.Globalization;
using System.Text;
using AppHost.Faults;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Microsoft.Extensions.DependencyInjection;

namespace AppHost.Tests.Chaos;

/// <summary>What a resource that was started but never became healthy was doing: its process's state, an answer (or
/// none) from its own port (not the orchestrator's proxy in front of it), the managed stacks of its threads (when
/// <c>dotnet-stack</c> is installed; <c>test.sh</c> installs it in <c>TestResults/tools</c>) and the end of its console
/// output. Kept in <c>TestResults/start-{resource}-{time}.txt</c> and returned for the failure's message.</summary>
internal static class StartDiagnostics
{
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan StackTimeout = TimeSpan.FromSeconds(60);
    private const int LogLines = 120;

    public static async Task<string> DescribeAsync(DistributedApplication app, string resource)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"{resource} at {DateTime.UtcNow:HH:mm:ss.fff} UTC:");
        int? pid = null;
        try
        {
            using var timeout = new CancellationTokenSource(ProbeTimeout);
            pid = await ResourceProcess.ApplicationProcessIdAsync(app.ResourceNotifications, resource, timeout.Token);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            text.AppendLine("process: none reported (" + ex.Message + ")");
        }

        if (pid is { } p)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"process {p}: state {ResourceProcess.State(p) ?? "gone"}, {ProcFields(p, "status", "Threads:")}");
            foreach (var url in ProcessEnvironment(p, "ASPNETCORE_URLS").Split(';', StringSplitOptions.RemoveEmptyEntries))
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"GET {url}/health (its own port): {await ProbeAsync(url.Replace("+", "127.0.0.1", StringComparison.Ordinal).Replace("*", "127.0.0.1", StringComparison.Ordinal) + "/health")}");
            }

            text.AppendLine("managed stacks:");
            text.AppendLine(await StacksAsync(p));
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"last {LogLines} lines of its console output:");
        try
        {
            var logs = app.Services.GetRequiredService<ResourceLoggerService>();
            var lines = new List<string>();
            await foreach (var batch in logs.GetAllAsync(ResourceLogCapture.ResolveResource(app, resource)))
            {
                lines.AddRange(batch.Select(l => l.Content));
            }

            foreach (var line in lines.TakeLast(LogLines))
            {
                text.AppendLine("  " + line);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            text.AppendLine("  (not available: " + ex.Message + ")");
        }

        var report = text.ToString();
        if (ChaosLog.FindRoot() is { } root)
        {
            var directory = Path.Combine(root, "TestResults");
            Directory.CreateDirectory(directory);
            await File.WriteAllTextAsync(Path.Combine(directory, $"start-{resource}-{DateTime.UtcNow:HHmmss}.txt"), report);
        }

        return report;
    }

    private static async Task<string> ProbeAsync(string url)
    {
        try
        {
            using var http = new HttpClient { Timeout = ProbeTimeout };
            using var response = await http.GetAsync(new Uri(url));
            return $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return "no answer: " + ex.GetType().Name + ": " + ex.Message;
        }
    }

    private static async Task<string> StacksAsync(int pid)
    {
        var tool = new[]
        {
            ChaosLog.FindRoot() is { } root ? Path.Combine(root, "TestResults", "tools", "dotnet-stack") : null,
            Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".dotnet", "tools", "dotnet-stack"),
        }.FirstOrDefault(File.Exists);
        if (tool is null)
        {
            return "  (dotnet-stack is not installed)";
        }

        try
        {
            var start = new ProcessStartInfo(tool, ["report", "-p", pid.ToString(CultureInfo.InvariantCulture)])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            using var process = Process.Start(start)!;
            using var timeout = new CancellationTokenSource(StackTimeout);
            var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
            var error = process.StandardError.ReadToEndAsync(timeout.Token);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                return "  (dotnet-stack did not finish in " + StackTimeout.TotalSeconds + " s)";
            }

            return await output + await error;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return "  (dotnet-stack failed: " + ex.Message + ")";
        }
    }

    /// <summary>The lines of <c>/proc/pid/{file}</c> that start with <paramref name="prefix"/>.</summary>
    private static string ProcFields(int pid, string file, string prefix)
    {
        try
        {
            return string.Join(", ", File.ReadAllLines($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/{file}").Where(l => l.StartsWith(prefix, StringComparison.Ordinal)));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <summary>A variable of the process's environment (empty when unknown).</summary>
    private static string ProcessEnvironment(int pid, string name)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/environ").Split('\0')
                .Where(v => v.StartsWith(name + "=", StringComparison.Ordinal)).Select(v => v[(name.Length + 1)..]).FirstOrDefault() ?? "";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }
}
