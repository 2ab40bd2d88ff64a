using Xunit.Abstractions;

namespace AppHost.Tests.Chaos;

/// <summary>Writes each fault's counts to the test output and to <c>TestResults/chaos-report.txt</c> at the repository
/// root, which <c>test.sh</c> prints after the run (passing tests' output is otherwise not shown).</summary>
internal static class ChaosLog
{
    private static readonly Lock Gate = new();

    public static void Write(ITestOutputHelper output, string fault, object report)
    {
        var line = $"{DateTime.UtcNow:HH:mm:ss} {fault}: {report}";
        output.WriteLine(line);
        var root = FindRoot();
        if (root is null)
        {
            return;
        }
        var file = Path.Combine(root, "TestResults", "chaos-report.txt");
        lock (Gate)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            File.AppendAllLines(file, [line]);
        }
    }

    /// <summary>Keeps the nodes' console output of a failed run in <c>TestResults/chaos-{name}-nodes.log</c>.</summary>
    public static void WriteNodeLogs(string name, IReadOnlyList<string> lines)
    {
        if (FindRoot() is { } root)
        {
            Directory.CreateDirectory(Path.Combine(root, "TestResults"));
            File.WriteAllLines(Path.Combine(root, "TestResults", $"chaos-{name}-nodes.log"), lines);
        }
    }

    /// <summary>The folder of ReferenceApp.sln above the test's binaries (null when there is none).</summary>
    internal static string? FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ReferenceApp.sln")))
            {
                return dir.FullName;
            }
        }
        return null;
    }
}
