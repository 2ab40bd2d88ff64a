using System.Diagnostics;
using System.Text;

namespace Package.Tests.Infrastructure;

/// <summary>Runs a command to completion within a deadline (killing it past the deadline) and returns its output.</summary>
internal static class ProcessRunner
{
    /// <summary>Environment variables the test host sets for its own build (MSBuild's, the test platform's) that must not
    /// leak into a build of another project.</summary>
    private static readonly string[] InheritedPrefixes = ["MSBuild", "MSBUILD", "VSTEST", "DOTNET_HOST_PATH", "TESTINGPLATFORM"];

    /// <summary>The start info of <paramref name="fileName"/> with <paramref name="arguments"/> in <paramref name="workingDirectory"/>,
    /// without the test host's build variables, quiet .NET CLI.</summary>
    public static ProcessStartInfo StartInfo(string fileName, IEnumerable<string> arguments, string workingDirectory)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        foreach (var name in startInfo.Environment.Keys.Where(k => InheritedPrefixes.Any(p => k.StartsWith(p, StringComparison.Ordinal))).ToList())
        {
            startInfo.Environment.Remove(name);
        }

        startInfo.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        startInfo.Environment["DOTNET_NOLOGO"] = "1";
        startInfo.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        return startInfo;
    }

    /// <summary>Runs the command; throws with its output when it fails or outlives <paramref name="timeout"/>.</summary>
    public static async Task<string> RunAsync(string fileName, IEnumerable<string> arguments, string workingDirectory, TimeSpan timeout)
    {
        var startInfo = StartInfo(fileName, arguments, workingDirectory);
        var line = fileName + " " + string.Join(' ', startInfo.ArgumentList);
        var output = new StringBuilder();
        using var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) => Append(output, e.Data);
        process.ErrorDataReceived += (_, e) => Append(output, e.Data);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"`{line}` did not finish within {timeout.TotalSeconds:0} s:\n{Text(output)}");
        }

        process.WaitForExit(); // flushes the output handlers
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"`{line}` exited with {process.ExitCode}:\n{Text(output)}");
        }

        return Text(output);
    }

    private static void Append(StringBuilder output, string? data)
    {
        if (data is null)
        {
            return;
        }

        lock (output)
        {
            output.AppendLine(data);
        }
    }

    private static string Text(StringBuilder output)
    {
        lock (output)
        {
            return output.ToString();
        }
    }
}
