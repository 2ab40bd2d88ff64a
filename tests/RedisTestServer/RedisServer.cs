using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using StackExchange.Redis;

namespace RedisTestServer;

/// <summary>
/// A private <c>redis-server</c> process on a free loopback port and a temp directory, for one test class or benchmark
/// scenario; without persistence by default, or persistent (<c>--appendonly yes --appendfsync always</c>) so that a
/// restart keeps the data. Besides start and stop it offers the faults tests and benchmarks inject: kill (SIGKILL),
/// stop and restart on the same port (at once, or after a down time), pause and resume (SIGSTOP / SIGCONT),
/// <c>CLIENT KILL</c> / <c>CLIENT LIST</c> on throw-away connections, and raw commands through an admin connection.
/// Shared by tests/Adapter.Tests and benchmarks/Benchmarks.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    private const string RedisServerPath = "/usr/bin/redis-server";
    /// <summary>Ports tried for one server before giving up (a port can be taken between the check and the bind).</summary>
    internal const int StartAttempts = 5;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(10);

    // Every redis-server this process started and still holds: killed when this process exits, or is told to by SIGTERM
    // or SIGINT (the handlers do not cancel the signal: the process still ends as it would have), so that a test run or
    // benchmark stopped midway leaves no server behind.
    private static readonly ConcurrentDictionary<Process, byte> Live = new();
    private static readonly PosixSignalRegistration[] SignalHandlers =
    [
        PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => KillLive()),
        PosixSignalRegistration.Create(PosixSignal.SIGINT, _ => KillLive()),
    ];

    static RedisServer() => AppDomain.CurrentDomain.ProcessExit += (_, _) =>
    {
        KillLive();
        GC.KeepAlive(SignalHandlers); // the field holds the registrations (one that is collected stops handling its signal)
    };

    private static void KillLive()
    {
        foreach (var process in Live.Keys)
        {
            try
            {
                process.Kill();
            }
            catch (Exception ex) when (ex is InvalidOperationException or Win32Exception or NotSupportedException)
            {
                // Gone already.
            }
        }
    }

    private readonly DirectoryInfo _dataDirectory;
    private readonly StringBuilder _log = new();
    private readonly Lock _gate = new();
    private Process? _process;
    private ConnectionMultiplexer? _admin;
    private bool _paused;
    private string[] _extraArguments = [];

    /// <summary>True when the server keeps its data across <see cref="RestartAsync()"/> and
    /// <see cref="RestartAsync(TimeSpan)"/> (AOF, fsync always).</summary>
    public bool Persistent { get; private init; }

    private RedisServer(DirectoryInfo dataDirectory, int port)
    {
        _dataDirectory = dataDirectory;
        Port = port;
    }

    /// <summary>The TCP port the server listens on (stays the same across restarts).</summary>
    public int Port { get; }

    /// <summary>The TLS port, when started with <see cref="StartWithTlsAsync"/> (the plain <see cref="Port"/> stays, for
    /// the admin connection); else 0.</summary>
    public int TlsPort { get; private init; }

    /// <summary>The certificate authority (PEM) that signed the server's TLS certificate, or null without TLS.</summary>
    public string? CaCertificatePath { get; private set; }

    /// <summary>A connection string for the TLS port (<c>ssl=true</c>); the client must trust <see cref="CaCertificatePath"/>.</summary>
    public string TlsConnectionString => $"127.0.0.1:{TlsPort.ToString(CultureInfo.InvariantCulture)},abortConnect=false,ssl=true,sslHost=localhost";

    /// <summary>The process id of the current <c>redis-server</c> process.</summary>
    public int Pid => _process?.Id ?? throw new InvalidOperationException("redis-server is not running.");

    /// <summary>True while the current process has not exited.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>A StackExchange.Redis connection string for this server (<c>abortConnect=false</c>, so clients ride out restarts).</summary>
    public string ConnectionString => $"127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)},abortConnect=false";

    /// <summary>What redis-server printed so far (for failure messages).</summary>
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

    /// <summary>Starts a server on a free port, retrying with another port if one fails, and waits until it answers PING.</summary>
    public static async Task<RedisServer> StartAsync() => await StartAsync(persistent: false);

    /// <summary>Starts a server without persistence that also listens with TLS on <see cref="TlsPort"/>, with a
    /// certificate authority and a server certificate (localhost, 127.0.0.1) made now for it.</summary>
    public static async Task<RedisServer> StartWithTlsAsync()
    {
        var dataDirectory = Directory.CreateTempSubdirectory("redis-test-server-tls-");
        var server = new RedisServer(dataDirectory, FreeLoopbackPort()) { TlsPort = FreeLoopbackPort() };
        server.CaCertificatePath = TestCertificates.Create(Directory.CreateDirectory(dataDirectory.FullName + "-certs").FullName);
        await server.StartProcessAsync();
        return server;
    }

    /// <summary>Starts a server; with <paramref name="persistent"/> it writes every command to an append-only file
    /// (<c>appendfsync always</c>), so a restart brings the data back; without, a restart is empty.</summary>
    public static async Task<RedisServer> StartAsync(bool persistent)
    {
        var dataDirectory = Directory.CreateTempSubdirectory("redis-test-server-");
        Exception? last = null;
        for (var attempt = 0; attempt < StartAttempts; attempt++)
        {
            var server = new RedisServer(dataDirectory, FreeLoopbackPort()) { Persistent = persistent };
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

    /// <summary>Starts one node of a Redis Cluster (<c>--cluster-enabled yes</c>) on <paramref name="port"/> (whose
    /// cluster bus port, +10000, must be free too), without persistence; <see cref="RedisCluster"/> joins them.</summary>
    internal static async Task<RedisServer> StartClusterNodeAsync(int port, TimeSpan nodeTimeout)
    {
        var dataDirectory = Directory.CreateTempSubdirectory("redis-test-cluster-");
        var server = new RedisServer(dataDirectory, port)
        {
            _extraArguments =
            [
                "--cluster-enabled", "yes",
                "--cluster-config-file", Path.Combine(dataDirectory.FullName, "nodes.conf"),
                "--cluster-node-timeout", ((int)nodeTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture),
                // A replica takes over however long its link to the master was down (availability first): a test
                // then sees what a promoted replica lacks.
                "--cluster-replica-validity-factor", "0",
                // The slots of the other masters stay served while one master fails over.
                "--cluster-require-full-coverage", "no",
            ],
        };
        try
        {
            await server.StartProcessAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>Sends one command on a fresh socket (no client library) and returns the raw RESP reply (first 64 KB),
    /// e.g. <c>CLUSTER NODES</c> or <c>CLUSTER FAILOVER</c> to this very server.</summary>
    public Task<string> RawCommandAsync(params string[] parts) => SendRawCommandAsync(parts);

    /// <summary>Kills the server with SIGKILL (no goodbye, nothing saved) and waits for the process to be gone.</summary>
    public async Task KillAsync()
    {
        var process = _process ?? throw new InvalidOperationException("redis-server was never started.");
        if (_paused)
        {
            Resume();
        }

        if (!process.HasExited)
        {
            process.Kill();
        }

        await WaitForExitAsync(process);
    }

    /// <summary>Stops the server cleanly (<c>SHUTDOWN NOSAVE</c>), falling back to SIGKILL if it does not exit in time.</summary>
    public async Task StopAsync()
    {
        var process = _process ?? throw new InvalidOperationException("redis-server was never started.");
        if (process.HasExited)
        {
            return;
        }

        await ShutdownAsync(process, "SHUTDOWN", "NOSAVE");
    }

    /// <summary>Stops the server if it runs (<see cref="StopAsync"/>) and starts it again at once on the same port: empty,
    /// or with its data when <see cref="Persistent"/>.</summary>
    public async Task RestartAsync()
    {
        if (IsRunning)
        {
            await StopAsync();
        }

        await StartProcessAsync();
    }

    /// <summary>Stops the server with <c>SHUTDOWN</c> (which fsyncs the AOF when persistent), waits <paramref name="downTime"/>,
    /// and starts it again on the same port with the same data directory. Returns when it answers PING again.</summary>
    public async Task RestartAsync(TimeSpan downTime)
    {
        var process = _process ?? throw new InvalidOperationException("redis-server was never started.");
        await ShutdownAsync(process, "SHUTDOWN");
        await Task.Delay(downTime);
        await StartProcessAsync();
    }

    /// <summary>Kills the server with SIGKILL, deletes its data files (as a crash of a Redis without persistence would
    /// leave it), waits <paramref name="downTime"/>, and starts it again on the same port, empty.</summary>
    public async Task RestartEmptyAsync(TimeSpan downTime)
    {
        await KillAsync();
        foreach (var entry in _dataDirectory.EnumerateFileSystemInfos())
        {
            if (entry is DirectoryInfo directory)
            {
                directory.Delete(recursive: true);
            }
            else
            {
                entry.Delete();
            }
        }

        await Task.Delay(downTime);
        await StartProcessAsync();
    }

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

    /// <summary>Runs <c>CLIENT KILL TYPE &lt;type&gt;</c> on a throw-away connection; returns how many were killed.</summary>
    public async Task<int> ClientKillAsync(string type)
    {
        ArgumentNullException.ThrowIfNull(type);
        var reply = await SendRawCommandAsync("CLIENT", "KILL", "TYPE", type);
        // Integer reply ":<n>\r\n".
        return reply.StartsWith(':') && int.TryParse(reply.AsSpan(1).TrimEnd("\r\n"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
            ? n
            : throw new InvalidOperationException($"CLIENT KILL TYPE {type} answered: {reply.Trim()}");
    }

    /// <summary>Lists the connected clients (raw <c>CLIENT LIST</c> reply, first 64 KB).</summary>
    public Task<string> ClientListAsync() => SendRawCommandAsync("CLIENT", "LIST");

    /// <summary>Runs one command (e.g. <c>CLIENT KILL TYPE normal</c>, <c>XADD</c>, <c>XLEN</c>) through a separate admin connection.</summary>
    public async Task<RedisResult> ExecuteAsync(params string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Length == 0)
        {
            throw new ArgumentException("A command is required.", nameof(args));
        }

        var admin = await GetAdminAsync();
        return await admin.GetDatabase().ExecuteAsync(args[0], args.Skip(1).Cast<object>().ToArray());
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_admin is not null)
        {
            await _admin.DisposeAsync();
            _admin = null;
        }

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

            ReleaseProcess();
        }

        try
        {
            _dataDirectory.Delete(recursive: true);
            if (CaCertificatePath is not null)
            {
                Directory.Delete(Path.GetDirectoryName(CaCertificatePath)!, recursive: true);
            }
        }
        catch (IOException)
        {
            // A temp directory left behind is harmless.
        }
    }

    private async Task<ConnectionMultiplexer> GetAdminAsync()
    {
        if (_admin is null)
        {
            var options = ConfigurationOptions.Parse(ConnectionString);
            options.AllowAdmin = true;
            options.ClientName = "redis-test-server-admin";
            _admin = await ConnectionMultiplexer.ConnectAsync(options);
        }

        return _admin;
    }

    /// <summary>Sends <paramref name="command"/> (a <c>SHUTDOWN</c> variant) after thawing a paused server, and waits for
    /// the process to exit, falling back to SIGKILL if it does not exit in time.</summary>
    private async Task ShutdownAsync(Process process, params string[] command)
    {
        if (_paused)
        {
            Resume();
        }

        try
        {
            await SendRawCommandAsync(command);
        }
        catch (Exception ex) when (ex is IOException or SocketException or TimeoutException)
        {
            // The connection drops as the server exits; that is the expected outcome of SHUTDOWN.
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
    }

    private async Task StartProcessAsync()
    {
        ReleaseProcess();
        var startInfo = new ProcessStartInfo(RedisServerPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[]
        {
            "--port", Port.ToString(CultureInfo.InvariantCulture),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", Persistent ? "yes" : "no",
            "--appendfsync", "always",
            "--dir", _dataDirectory.FullName,
            "--protected-mode", "no",
        })
        {
            startInfo.ArgumentList.Add(arg);
        }

        foreach (var arg in _extraArguments)
        {
            startInfo.ArgumentList.Add(arg);
        }

        if (TlsPort != 0 && CaCertificatePath is { } ca)
        {
            var certificates = Path.GetDirectoryName(ca)!;
            foreach (var arg in new[]
            {
                "--tls-port", TlsPort.ToString(CultureInfo.InvariantCulture),
                "--tls-cert-file", Path.Combine(certificates, TestCertificates.CertificateFile),
                "--tls-key-file", Path.Combine(certificates, TestCertificates.KeyFile),
                "--tls-ca-cert-file", ca,
                "--tls-auth-clients", "no",
            })
            {
                startInfo.ArgumentList.Add(arg);
            }
        }

        var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) => AppendLog(e.Data);
        process.ErrorDataReceived += (_, e) => AppendLog(e.Data);
        if (!process.Start())
        {
            throw new IOException("redis-server did not start.");
        }

        Live.TryAdd(process, 0);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        _paused = false;

        var deadline = Stopwatch.StartNew();
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

            if (deadline.Elapsed > StartTimeout)
            {
                throw new TimeoutException($"redis-server on port {Port} did not answer PING within {StartTimeout}: {Log}");
            }

            // Polling interval while waiting for the PING condition above (bounded by the deadline).
            await Task.Delay(25);
        }
    }

    /// <summary>Sends one RESP command on a fresh socket and returns what the first read brings back (up to 64 KB).</summary>
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
        var pid = Pid;
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

        ReleaseProcess();
    }

    /// <summary>Lets go of the current process object (no longer one to kill at exit), if any.</summary>
    private void ReleaseProcess()
    {
        if (_process is not null)
        {
            Live.TryRemove(_process, out _);
            _process.Dispose();
            _process = null;
        }
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
