using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using AppHost.Tests.Infrastructure;

namespace Package.Tests.Infrastructure;

/// <summary>One process of the built sample (<c>dotnet TwoServerSample.dll</c>) on a free loopback port, talking to
/// <paramref name="redis"/>; killed on dispose.</summary>
internal sealed class SampleServer : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private SampleServer(Process process, string name, Uri url)
    {
        _process = process;
        Name = name;
        Url = url;
    }

    public string Name { get; }

    public Uri Url { get; }

    /// <summary>What the process printed so far.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Starts the server and waits until it answers <c>GET /</c> with its name.</summary>
    public static async Task<SampleServer> StartAsync(string assembly, string name, string redis)
    {
        var url = new Uri("http://127.0.0.1:" + FreeLoopbackPort().ToString(CultureInfo.InvariantCulture));
        var startInfo = ProcessRunner.StartInfo("dotnet", [assembly, "--urls", url.ToString(), "--Redis", redis, "--Name", name], Path.GetDirectoryName(assembly)!);
        var process = new Process { StartInfo = startInfo };
        var server = new SampleServer(process, name, url);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { BaseAddress = url, Timeout = TimeSpan.FromSeconds(5) };
            await Eventually.TrueAsync(
                async () => !process.HasExited && await http.GetStringAsync(new Uri("/", UriKind.Relative)) == name,
                StartTimeout,
                $"{name} to answer on {url}");
        }
        catch (TimeoutException ex)
        {
            var output = server.Output;
            await server.DisposeAsync();
            throw new TimeoutException(ex.Message + "\nIts output:\n" + output, ex);
        }

        return server;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
