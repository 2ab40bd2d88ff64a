using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Benchmarks.Infrastructure;

/// <summary>
/// A private <c>redis-server</c> on a free loopback port and a temp directory, for one scenario. Optionally persistent
/// (<c>--appendonly yes --appendfsync always</c>) so that a restart keeps the data. Offers the faults the outage
/// scenario injects: clean restart on the same port, <c>CLIENT KILL</c>, SIGSTOP / SIGCONT.
/// (Adapted from tests/Adapter.Tests/Infrastructure/RedisServer.cs; this project does not reference the tests.)
/// </summary>
internal sealed class RedisServer : IAsyncDisposable
{
    private const string RedisServerPath = "/usr/bin/redis-server";
    private const int StartAttempts = 5;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(10);

    private readonly DirectoryInfo _dataDirectory;
    private readonly bool _persistent;
    private readonly StringBuilder _log = new();
    private readonly Lock _gate = new();
    private Process? _process;
    private bool _paused;

    private RedisServer(DirectoryInfo dataDirectory, int port, bool persistent)
    {
        _dataDirectory = dataDirectory;
        Port = port;
        _persistent = persistent;
    }

    /// <summary>The TCP port (the same across restarts).</summary>
    public int Port { get; }

    /// <summary>A StackExchange.Redis connection string (<c>abortConnect=false</c>, so clients ride out restarts).</summary>
    public string ConnectionString => $"127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)},abortConnect=false";

    /// <summary>What redis-server printed so far.</summary>
    public string Log
    {
        get
        {
            lock (_gate)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>Starts a server on a free port (retrying another port if one fails) and waits until it answers PING.</summary>
    public static async Task<RedisServer> StartAsync(bool persistent)
    {
        var dataDirectory = Directory.CreateTempSubdirectory("signalr-bench-redis-");
        Exception? last = null;
        for (var attempt = 0; attempt < StartAttempts; attempt++)
        {
            var server = new RedisServer(dataDirectory, FreeLoopbackPort(), persistent);
            try
            {
                await server.StartProcessAsync();
                return server;
            }
            catch (Exception ex) when (ex is IOException or TimeoutException)
            {
                last = ex;
                server.KillProcess();
            }
        }

        dataDirectory.Delete(recursive: true);
        throw new InvalidOperationException($"redis-server did not start after {StartAttempts} attempts.", last);
    }

    /// <summary>Stops the server with <c>SHUTDOWN</c> (which fsyncs the AOF when persistent), waits <paramref name="downTime"/>,
    /// and starts it again on the same port with the same data directory. Returns when it answers PING again.</summary>
    public async Task RestartAsync(TimeSpan downTime)
    {
        var process = _process ?? throw new InvalidOperationException("redis-server was never started.");
        if (_paused)
        {
            Resume();
        }

        try
        {
            await SendRawCommandAsync("SHUTDOWN");
        }
        catch (Exception ex) when (ex is IOException or SocketException or TimeoutException)
        {
            // The connection drops as the server exits; that is what SHUTDOWN does.
        }

        try
        {
            await WaitForExitAsync(process);
        }
        catch (TimeoutException)
        {
            process.Kill();
            await WaitForExitAsync(process);
        }

        await Task.Delay(downTime);
        await StartProcessAsync();
    }

    /// <summary>Runs <c>CLIENT KILL TYPE &lt;type&gt;</c> on a throw-away connection; returns how many were killed.</summary>
    public async Task<int> ClientKillAsync(string type)
    {
        var reply = await SendRawCommandAsync("CLIENT", "KILL", "TYPE", type);
        // Integer reply ":<n>\r\n".
        return reply.StartsWith(':') && int.TryParse(reply.AsSpan(1).TrimEnd("\r\n"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
            ? n
            : throw new InvalidOperationException($"CLIENT KILL TYPE {type} answered: {reply.Trim()}");
    }

    /// <summary>Lists the connected clients (raw <c>CLIENT LIST</c> reply, first 64 KB).</summary>
    public Task<string> ClientListAsync() => SendRawCommandAsync("CLIENT", "LIST");

    /// <summary>Freezes the server with SIGSTOP: connections stay open but nothing is answered.</summary>
    public void Pause()
    {
        SendSignal("STOP");
        _paused = true;
    }

    /// <summary>Thaws a server frozen by <see cref="Pause"/> (SIGCONT).</summary>
    public void Resume()
    {
        SendSignal("CONT");
        _paused = false;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            try
            {
                if (_paused)
                {
                    Resume();
                }

                if (!_process.HasExited)
                {
                    _process.Kill();
                    await WaitForExitAsync(_process);
                }
            }
            catch (Exception ex) when (ex is InvalidOperationException or TimeoutException)
            {
                // Already gone.
            }

            _process.Dispose();
            _process = null;
        }

        try
        {
            _dataDirectory.Delete(recursive: true);
        }
        catch (IOException)
        {
            // A temp directory left behind is harmless.
        }
    }

    private async Task StartProcessAsync()
    {
        _process?.Dispose();
        var startInfo = new ProcessStartInfo(RedisServerPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var args = new List<string>
        {
            "--port", Port.ToString(CultureInfo.InvariantCulture),
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", _dataDirectory.FullName,
            "--protected-mode", "no",
        };
        args.AddRange(_persistent ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]);
        foreach (var arg in args)
        {
            startInfo.ArgumentList.Add(arg);
        }

        var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) => AppendLog(e.Data);
        process.ErrorDataReceived += (_, e) => AppendLog(e.Data);
        if (!process.Start())
        {
            throw new IOException("redis-server did not start.");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        _paused = false;

        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                throw new IOException($"redis-server exited with code {process.ExitCode} on port {Port}: {Log}");
            }

            try
            {
                var reply = await SendRawCommandAsync("PING");
                if (reply.StartsWith("+PONG", StringComparison.Ordinal))
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is IOException or SocketException or TimeoutException)
            {
                // Not listening yet (or still loading the AOF).
            }

            if (clock.Elapsed > StartTimeout)
            {
                throw new TimeoutException($"redis-server on port {Port} did not answer PING within {StartTimeout}: {Log}");
            }

            // Polling interval of a deadline-bounded wait for PING.
            await Task.Delay(25);
        }
    }

    /// <summary>Sends one RESP command on a fresh socket and returns the reply (up to 64 KB).</summary>
    private async Task<string> SendRawCommandAsync(params string[] parts)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(IPAddress.Loopback, Port, timeout.Token);
            var request = new StringBuilder();
            request.Append(CultureInfo.InvariantCulture, $"*{parts.Length}\r\n");
            foreach (var part in parts)
            {
                request.Append(CultureInfo.InvariantCulture, $"${Encoding.UTF8.GetByteCount(part)}\r\n{part}\r\n");
            }

            var stream = client.GetStream();
            await stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()), timeout.Token);
            var buffer = new byte[64 * 1024];
            var read = await stream.ReadAsync(buffer, timeout.Token);
            if (read == 0)
            {
                throw new IOException("redis-server closed the connection.");
            }

            return Encoding.UTF8.GetString(buffer, 0, read);
        }
        catch (OperationCanceledException ex)
        {
            throw new TimeoutException($"redis-server on port {Port} did not answer {parts[0]}.", ex);
        }
    }

    private void SendSignal(string signal)
    {
        var pid = _process?.Id ?? throw new InvalidOperationException("redis-server is not running.");
        using var kill = Process.Start(new ProcessStartInfo("kill")
        {
            ArgumentList = { "-" + signal, pid.ToString(CultureInfo.InvariantCulture) },
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException("Could not run kill.");
        if (!kill.WaitForExit(ExitTimeout) || kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -{signal} {pid} failed.");
        }
    }

    private static async Task WaitForExitAsync(Process process)
    {
        using var timeout = new CancellationTokenSource(ExitTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException ex)
        {
            throw new TimeoutException($"redis-server (pid {process.Id}) did not exit within {ExitTimeout}.", ex);
        }
    }

    private void KillProcess()
    {
        try
        {
            if (_process is { HasExited: false })
            {
                _process.Kill();
                _process.WaitForExit(ExitTimeout);
            }
        }
        catch (InvalidOperationException)
        {
            // Never started or already gone.
        }

        _process?.Dispose();
        _process = null;
    }

    private void AppendLog(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_gate)
        {
            if (_log.Length < 64 * 1024)
            {
                _log.AppendLine(line);
            }
        }
    }

    private static int FreeLoopbackPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        finally
        {
            listener.Stop();
        }
    }
}
