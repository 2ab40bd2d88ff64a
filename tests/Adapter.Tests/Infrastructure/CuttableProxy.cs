using System.Net;
using System.Net.Sockets;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>
/// A loopback TCP hop in front of a test node, for the faults a client meets when its server dies: <see cref="Freeze"/>
/// drops every byte the server sends from then on (the server goes on writing into a socket nobody reads, as it does
/// when the client's network or the server itself is gone), and <see cref="Cut"/> closes every connection at once.
/// </summary>
public sealed class CuttableProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly int _targetPort;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Socket> _sockets = [];
    private readonly Lock _lock = new();
    private readonly Task _acceptLoop;
    private volatile bool _frozen;

    private CuttableProxy(int targetPort)
    {
        _targetPort = targetPort;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = AcceptLoopAsync();
    }

    /// <summary>The loopback port to connect to instead of the node's.</summary>
    public int Port { get; }

    /// <summary>Starts a hop to the server listening on <paramref name="targetUrl"/> (e.g. <c>http://127.0.0.1:4321</c>).</summary>
    public static CuttableProxy Start(string targetUrl) => new(new Uri(targetUrl).Port);

    /// <summary>The proxied form of <paramref name="url"/> (same path, this hop's port).</summary>
    public string Rewrite(string url) => new UriBuilder(url) { Port = Port }.Uri.ToString().TrimEnd('/');

    /// <summary>From now on, bytes from the server are read and dropped.</summary>
    public void Freeze() => _frozen = true;

    /// <summary>Bytes from the server flow again (on connections made from now on; cut the frozen ones).</summary>
    public void Thaw() => _frozen = false;

    /// <summary>Closes every connection through the hop (both sides see a reset).</summary>
    public void Cut()
    {
        lock (_lock)
        {
            foreach (var socket in _sockets)
            {
                try
                {
                    socket.LingerState = new LingerOption(true, 0);
                    socket.Close();
                }
                catch (ObjectDisposedException)
                {
                }
            }
            _sockets.Clear();
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stopping.Token);
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await server.ConnectAsync(new IPEndPoint(IPAddress.Loopback, _targetPort), _stopping.Token);
            }
            catch (SocketException)
            {
                client.Close();
                server.Dispose();
                continue;
            }
            lock (_lock)
            {
                _sockets.Add(client);
                _sockets.Add(server);
            }
            _ = PumpAsync(client, server, fromServer: false);
            _ = PumpAsync(server, client, fromServer: true);
        }
    }

    private async Task PumpAsync(Socket from, Socket to, bool fromServer)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, _stopping.Token);
                if (read == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }
                if (fromServer && _frozen)
                {
                    continue;
                }
                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, _stopping.Token);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // cut, or the other side closed
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        Cut();
        try
        {
            await _acceptLoop;
        }
        catch (OperationCanceledException)
        {
        }
        _stopping.Dispose();
    }
}
