using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Benchmarks.Infrastructure;

namespace Benchmarks.Soak;

/// <summary>A gap a node reported: when the soak read the line, how many packets, from which backplane node.</summary>
internal sealed record GapReport(long At, long Missing, string SenderNode, string Stream)
{
    /// <summary>True for a gap in a node's inbox (direct messages), false for the shared stream.</summary>
    public bool InInbox => Stream.Contains(":node:", StringComparison.Ordinal);
}

/// <summary>
/// One incarnation of a soak node: a child process running <see cref="SoakNode"/>. Reads its stdout (address, backplane
/// node id, log, outbox peak), samples its peak resident memory (<c>VmHWM</c>), and injects the node faults: SIGKILL,
/// SIGSTOP / SIGCONT.
/// </summary>
internal sealed partial class NodeProcess : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly TaskCompletionSource<string> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly LogSink _log;
    private long _peakOutbox;
    private long _peakMemory;
    private int _frozen;

    private NodeProcess(int index, int incarnation, Process process, LogSink log)
    {
        Index = index;
        Incarnation = incarnation;
        _process = process;
        _log = log;
    }

    public int Index { get; }

    public int Incarnation { get; }

    public string Url { get; private set; } = "";

    /// <summary>The backplane's id of this node (from its start-up log line), or "" until known.</summary>
    public string BackplaneId { get; private set; } = "";

    public int Pid => _process.Id;

    public ConcurrentQueue<GapReport> Gaps { get; } = new();

    public long PeakOutbox => Interlocked.Read(ref _peakOutbox);

    /// <summary>Peak resident memory in bytes, as last sampled.</summary>
    public long PeakMemory => Interlocked.Read(ref _peakMemory);

    public bool HasExited => _process.HasExited;

    /// <summary>The last <c>LOAD</c> line of a node running a load sender, or "".</summary>
    public string LastLoad { get; private set; } = "";

    public static async Task<NodeProcess> StartAsync(int index, int incarnation, string redis, int maxLength, int lifetimeMinutes, LogSink log, params string[] extra)
    {
        var startInfo = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        string[] arguments =
        [
            typeof(SoakNode).Assembly.Location, "soak-node", redis,
            maxLength.ToString(CultureInfo.InvariantCulture), lifetimeMinutes.ToString(CultureInfo.InvariantCulture), .. extra,
        ];
        foreach (var arg in arguments)
        {
            startInfo.ArgumentList.Add(arg);
        }

        startInfo.Environment["DOTNET_gcServer"] = "0";
        var process = new Process { StartInfo = startInfo };
        var node = new NodeProcess(index, incarnation, process, log);
        process.OutputDataReceived += (_, e) => node.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                log.Note($"node{index}.{incarnation} stderr: {e.Data}");
            }
        };
        if (!process.Start())
        {
            throw new IOException("The soak node did not start.");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            node.Url = await node._listening.Task.WaitAsync(StartTimeout);
        }
        catch (TimeoutException)
        {
            await node.DisposeAsync();
            throw new TimeoutException($"Soak node {index} did not listen within {StartTimeout.TotalSeconds:0} s.");
        }

        return node;
    }

    /// <summary>Reads the process's peak resident memory (Linux <c>/proc/&lt;pid&gt;/status</c>, VmHWM).</summary>
    public void SampleMemory()
    {
        var peak = PeakResidentBytes(_process.Id);
        if (peak > Interlocked.Read(ref _peakMemory))
        {
            Interlocked.Exchange(ref _peakMemory, peak);
        }
    }

    /// <summary>VmRSS of this process now, in bytes (0 when gone).</summary>
    public long CurrentMemory => ResidentBytes(_process.Id, "VmRSS:");

    /// <summary>VmHWM of a process in bytes, 0 if it cannot be read (the process is gone).</summary>
    public static long PeakResidentBytes(int pid) => ResidentBytes(pid, "VmHWM:");

    private static long ResidentBytes(int pid, string field)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/status"))
            {
                if (line.StartsWith(field, StringComparison.Ordinal))
                {
                    var kb = line[field.Length..].Trim().Split(' ')[0];
                    return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return 0;
    }

    public void Kill()
    {
        SampleMemory();
        Thaw();
        Signal(_process.Id, 9);
    }

    public void Freeze()
    {
        SampleMemory();
        Signal(_process.Id, 19);
        Interlocked.Exchange(ref _frozen, 1);
    }

    public void Thaw()
    {
        if (Interlocked.Exchange(ref _frozen, 0) == 1)
        {
            Signal(_process.Id, 18);
        }
    }

    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            Thaw();
            if (!_process.HasExited)
            {
                SampleMemory();
                _process.StandardInput.Close();
                try
                {
                    await WaitForExitAsync(TimeSpan.FromSeconds(15));
                }
                catch (OperationCanceledException)
                {
                    _process.Kill();
                    await WaitForExitAsync(TimeSpan.FromSeconds(10));
                }
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or OperationCanceledException or Win32Exception)
        {
            // Already gone.
        }
        finally
        {
            _process.Dispose();
        }
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        if (line.StartsWith("LISTENING ", StringComparison.Ordinal))
        {
            _listening.TrySetResult(line["LISTENING ".Length..]);
            return;
        }

        if (line.StartsWith("OUTBOX ", StringComparison.Ordinal))
        {
            if (long.TryParse(line.AsSpan("OUTBOX ".Length), NumberStyles.Integer, CultureInfo.InvariantCulture, out var peak) && peak > PeakOutbox)
            {
                Interlocked.Exchange(ref _peakOutbox, peak);
            }

            return;
        }

        if (line.StartsWith("LOAD ", StringComparison.Ordinal))
        {
            LastLoad = line;
            return;
        }

        var starting = StartingLine().Match(line);
        if (starting.Success)
        {
            BackplaneId = starting.Groups[1].Value;
        }

        var gap = GapLine().Match(line);
        if (gap.Success)
        {
            Gaps.Enqueue(new GapReport(Stopwatch.GetTimestamp(), long.Parse(gap.Groups[1].Value, CultureInfo.InvariantCulture), gap.Groups[2].Value, gap.Groups[3].Value));
        }

        _log.Note($"node{Index}.{Incarnation}: {line}");
    }

    private static string DotnetHost()
    {
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
        {
            return host;
        }

        var self = Environment.ProcessPath;
        return self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";
    }

    private static void Signal(int pid, int signal)
    {
        if (SendSignal(pid, signal) != 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), $"kill({pid}, {signal}) failed");
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SendSignal(int pid, int signal);

    [GeneratedRegex(@"Redis Streams backplane node (\w+) starting")]
    private static partial Regex StartingLine();

    [GeneratedRegex(@"Gap: (\d+) entries from node (\w+) in stream '([^']+)'")]
    private static partial Regex GapLine();
}
