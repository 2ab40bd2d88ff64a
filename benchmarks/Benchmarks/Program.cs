using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Benchmarks.Infrastructure;
using Benchmarks.Scenarios;
using Benchmarks.Soak;

namespace Benchmarks;

/// <summary>
/// Bounded load/fault harness: our Redis Streams SignalR backplane vs Microsoft's Redis pub/sub backplane.
/// <c>dotnet run -c Release --project benchmarks/Benchmarks -- throughput|latency|outage|tracing|cells|sweep|all|cluster [--quick]</c>
/// (<c>cluster</c>, on a local Redis Cluster, is not part of <c>all</c>),
/// and the soak: <c>-- soak [--minutes 30]</c> (see <see cref="SoakScenario"/>).
/// </summary>
internal static class Program
{
    private const string Usage = "usage: dotnet run -c Release --project benchmarks/Benchmarks -- throughput|latency|outage|tracing|cells|sweep|all|cluster [--quick] | soak [--minutes 30] | outage-memory [--minutes 10]";

    public static async Task<int> Main(string[] args)
    {
        var scenario = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal))?.ToLowerInvariant();
        if (scenario == "soak-node")
        {
            // A node process of the soak, started by the soak itself.
            return await SoakNode.RunAsync(args);
        }

        if (scenario == "soak")
        {
            return await SoakAsync(args);
        }

        if (scenario == "outage-memory")
        {
            return await OutageMemoryAsync(args);
        }

        var quick = args.Contains("--quick", StringComparer.OrdinalIgnoreCase);
        if (scenario is not ("throughput" or "latency" or "outage" or "tracing" or "cells" or "sweep" or "all" or "cluster"))
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }

        var gitState = GitState();
        var loadAtStart = LoadAverage();
        var logDirectory = Directory.CreateTempSubdirectory("signalr-bench-logs-");
        using var log = new LogSink(Path.Combine(logDirectory.FullName, scenario + ".log"));
        Console.WriteLine($"node logs: {log.Path}");
        var clock = Stopwatch.StartNew();
        var sections = new List<string>();
        var violations = new List<string>();
        // Plots: file name, SVG, and whether it replaces the committed one under docs/.
        var plots = new List<(string FileName, string Svg, bool Commit)>();
        try
        {
            if (scenario is "throughput" or "all")
            {
                sections.Add(await ThroughputScenario.RunAsync(quick ? ThroughputSettings.Quick : ThroughputSettings.Default, log));
            }

            if (scenario is "latency" or "all")
            {
                sections.Add(await LatencyScenario.RunAsync(quick ? LatencySettings.Quick : LatencySettings.Default, log));
            }

            if (scenario is "outage" or "all")
            {
                sections.Add(await OutageScenario.RunAsync(quick ? OutageSettings.Quick : OutageSettings.Default, log));
            }

            if (scenario is "tracing" or "all")
            {
                sections.Add(await TracingScenario.RunAsync(quick ? ThroughputSettings.Quick : ThroughputSettings.Default, log));
            }

            if (scenario is "cells" or "all")
            {
                var cells = await CellsScenario.RunAsync(quick ? CellsSettings.Quick : CellsSettings.Default, log);
                sections.Add(cells.Markdown);
                violations.AddRange(cells.Violations);
                plots.Add(("benchmark.svg", cells.Svg, scenario == "all"));
            }

            if (scenario is "cluster")
            {
                sections.Add(await ClusterScenario.RunAsync(quick ? ClusterSettings.Quick : ClusterSettings.Default, log));
            }

            if (scenario is "sweep" or "all")
            {
                var sweep = await SweepScenario.RunAsync(SweepSettings.WithNodesFromEnvironment(quick ? SweepSettings.Quick : SweepSettings.Default), log);
                sections.Add(sweep.Markdown);
                violations.AddRange(sweep.Violations);
                // `sweep` alone replaces the committed plot too, except in a --quick run (a smoke test, not results) or
                // one that keeps only some cells, node counts or backplanes.
                plots.Add(("sweep.svg", sweep.Svg, (scenario == "all" || !quick) && !SweepScenario.Filtered));
            }
        }
        catch (Exception ex) when (ex is TimeoutException or InvalidOperationException or IOException)
        {
            Console.Error.WriteLine($"The {scenario} scenario failed after {clock.Elapsed.TotalSeconds:0} s: {ex}");
            Console.Error.WriteLine($"Node logs: {log.Path}");
            return 1;
        }

        var command = "dotnet run -c Release --project benchmarks/Benchmarks -- " + string.Join(' ', args);
        var markdown = Header(command, gitState, $"{loadAtStart} at the start, {LoadAverage()} at the end", clock.Elapsed, quick) + string.Join(Environment.NewLine, sections);
        Console.WriteLine();
        Console.WriteLine(markdown);
        // Run from a copy of the build outside the repository (an A/B of two builds, say), the results and plots go next
        // to the node logs instead.
        var repository = TryFindRepositoryRoot();
        if (repository is null && (scenario == "all" || plots.Any(p => p.Commit)))
        {
            Console.WriteLine($"ReferenceApp.sln not found above {Directory.GetCurrentDirectory()} or the program: results go to {logDirectory.FullName}");
        }

        if (scenario == "all")
        {
            var path = repository is null ? Path.Combine(logDirectory.FullName, "RESULTS.md") : Path.Combine(repository, "benchmarks", "RESULTS.md");
            await File.WriteAllTextAsync(path, markdown);
            Console.WriteLine($"written to {path}");
        }

        foreach (var (fileName, svg, commit) in plots)
        {
            // A plot that does not replace the committed one goes next to the node logs.
            var plot = Path.Combine(commit && repository is not null ? Path.Combine(repository, "docs") : logDirectory.FullName, fileName);
            await File.WriteAllTextAsync(plot, svg);
            Console.WriteLine($"plot written to {plot}");
        }

        Console.WriteLine($"total {clock.Elapsed.TotalSeconds:0} s; node logs: {log.Path}");
        if (violations.Count > 0)
        {
            Console.Error.WriteLine();
            Console.Error.WriteLine($"********** CORRECTNESS FAILURES in {violations.Count} run(s): lost, duplicated, reordered or misdelivered messages, or failed sends **********");
            foreach (var violation in violations)
            {
                Console.Error.WriteLine("  " + violation);
            }

            return 1;
        }

        return 0;
    }

    private static double? Minutes(string[] args, double fallback)
    {
        var minutes = fallback;
        var at = Array.FindIndex(args, a => a.Equals("--minutes", StringComparison.OrdinalIgnoreCase));
        if (at >= 0 && (at + 1 >= args.Length || !double.TryParse(args[at + 1], NumberStyles.Float, CultureInfo.InvariantCulture, out minutes) || minutes is <= 0 or > 24 * 60))
        {
            Console.Error.WriteLine("--minutes must be a number of minutes between 0 and 1440.");
            return null;
        }

        return minutes;
    }

    private static async Task<int> OutageMemoryAsync(string[] args)
    {
        if (Minutes(args, 10) is not { } minutes)
        {
            return 2;
        }

        var logDirectory = Directory.CreateTempSubdirectory("signalr-outage-memory-logs-");
        using var log = new LogSink(Path.Combine(logDirectory.FullName, "outage-memory.log"));
        Console.WriteLine($"node logs: {log.Path}");
        var loadAtStart = LoadAverage();
        var (markdown, ok) = await OutageMemoryScenario.RunAsync(TimeSpan.FromMinutes(minutes), log);
        markdown = $"- Date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; code: {GitState()}; load average {loadAtStart} at the start, {LoadAverage()} at the end" +
                   Environment.NewLine + Environment.NewLine + markdown;
        Console.WriteLine();
        Console.WriteLine(markdown);
        await File.WriteAllTextAsync(Path.Combine(logDirectory.FullName, "outage-memory.md"), markdown);
        return ok ? 0 : 1;
    }

    private static async Task<int> SoakAsync(string[] args)
    {
        if (Minutes(args, 30) is not { } minutes)
        {
            return 2;
        }

        var logDirectory = Directory.CreateTempSubdirectory("signalr-soak-logs-");
        using var log = new LogSink(Path.Combine(logDirectory.FullName, "soak.log"));
        Console.WriteLine($"node logs: {log.Path}");
        var gitState = GitState();
        var loadAtStart = LoadAverage();
        // A short run (under 10 minutes) fires its faults more often, so that each kind fires a few times.
        var settings = minutes < 10 ? SoakSettings.Short with { Duration = TimeSpan.FromMinutes(minutes) } : SoakSettings.ForMinutes(minutes);
        var outcome = await SoakScenario.RunAsync(settings, log);
        var markdown = $"- Date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; code: {gitState}; load average {loadAtStart} at the start, {LoadAverage()} at the end" +
                       Environment.NewLine + Environment.NewLine + outcome.Markdown;
        Console.WriteLine();
        Console.WriteLine(markdown);
        var report = Path.Combine(logDirectory.FullName, "soak.md");
        await File.WriteAllTextAsync(report, markdown);
        Console.WriteLine($"report written to {report}; node logs: {log.Path}");
        var total = outcome.Account.Total;
        if (total.Lost + total.Duplicated + total.Reordered > 0 || !outcome.Settled)
        {
            Console.Error.WriteLine($"********** SOAK FAILED: lost {total.Lost}, duplicated {total.Duplicated}, reordered {total.Reordered}, settled {outcome.Settled} **********");
            return 1;
        }

        return 0;
    }

    private static string Header(string command, string gitState, string load, TimeSpan elapsed, bool quick)
    {
        var text = new StringBuilder();
        text.AppendLine("# Backplane benchmarks: ours (Redis Streams) vs Microsoft's (Redis pub/sub)");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"- Date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        text.AppendLine(CultureInfo.InvariantCulture, $"- Machine: 2 cores, noisy ({Environment.ProcessorCount} logical CPUs seen; {RuntimeInformation.OSDescription}; " +
                        $".NET {Environment.Version}; {RedisVersion()}; Microsoft.AspNetCore.SignalR.StackExchangeRedis 10.0.12)");
        text.AppendLine(CultureInfo.InvariantCulture, $"- Load average (1 min, from /proc/loadavg; other engineers' builds and tests share the machine): {load}");
        text.AppendLine(CultureInfo.InvariantCulture, $"- Code: {gitState}");
        text.AppendLine(CultureInfo.InvariantCulture, $"- Command: `{command}` (from the repository root; took {elapsed.TotalSeconds:0} s)");
        if (quick)
        {
            text.AppendLine("- **--quick**: reduced sizes, a smoke test only, not results.");
        }

        text.AppendLine("- Everything runs in **one process** on loopback: a private `redis-server` per scenario, in-process Kestrel nodes per " +
                        "backplane (2 in throughput, latency, outage and tracing; 3 in cells; 2, 3 and 6 in the sweep; `127.0.0.1:0`, hub at `/hub`, JSON protocol) and real SignalR clients over WebSockets. Clients, servers and " +
                        "Redis share the 2 cores, so absolute numbers are low and noisy; compare the two columns, measured in the same run with " +
                        "the same parameters. Each backplane uses its default options.");
        text.AppendLine("- Ratio = ours / Microsoft's (cells also: ours / the one-server no-backplane ceiling). Node logs (Warning and above) go to a temp file, named on the console.");
        text.AppendLine();
        return text.ToString();
    }

    /// <summary>The commit the adapter was built from, and whether Adapter/ had uncommitted changes (the run uses the working tree).</summary>
    private static string GitState()
    {
        try
        {
            if (TryFindRepositoryRoot() is not { } root)
            {
                return "git state unknown";
            }

            var head = RunGit(root, "rev-parse", "--short", "HEAD").Trim();
            var adapter = RunGit(root, "log", "-1", "--format=%h", "--", "Adapter").Trim();
            var dirty = RunGit(root, "--no-optional-locks", "status", "--porcelain", "--", "Adapter").Trim();
            return $"repository at commit `{head}` when the run started, `Adapter/` last changed in `{adapter}`; " + (dirty.Length == 0
                ? "`Adapter/` clean"
                : "`Adapter/` had **uncommitted changes** (another engineer's work in progress; the run used the working tree as built)");
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or TimeoutException)
        {
            return "git state unknown";
        }
    }

    private static string RunGit(string directory, params string[] args)
    {
        var startInfo = new ProcessStartInfo("git") { RedirectStandardOutput = true, UseShellExecute = false, WorkingDirectory = directory };
        foreach (var arg in args)
        {
            startInfo.ArgumentList.Add(arg);
        }

        using var process = Process.Start(startInfo) ?? throw new InvalidOperationException("Could not run git.");
        var output = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(10_000))
        {
            process.Kill();
            throw new TimeoutException("git did not answer within 10 s.");
        }

        return output.Result;
    }

    private static string LoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ')[0];
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    private static string RedisVersion()
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo("/usr/bin/redis-server", "--version")
            {
                RedirectStandardOutput = true,
                UseShellExecute = false,
            });
            if (process is null)
            {
                return "redis-server (version unknown)";
            }

            var output = process.StandardOutput.ReadToEnd();
            process.WaitForExit(5_000);
            var version = output.Split(' ').FirstOrDefault(p => p.StartsWith("v=", StringComparison.Ordinal));
            return "redis-server " + (version?[2..] ?? "(version unknown)");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "redis-server (version unknown)";
        }
    }

    /// <summary>The repository's root, looked for above the current folder and then above the program; null when the
    /// program runs from a copy outside it.</summary>
    private static string? TryFindRepositoryRoot() => RedisTestServer.RepositoryRoot.Find(Directory.GetCurrentDirectory(), AppContext.BaseDirectory);
}
