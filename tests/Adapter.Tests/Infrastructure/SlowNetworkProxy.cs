using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>
/// A loopback TCP hop in front of Redis that delivers every byte <see cref="Latency"/> after it was sent, in each
/// direction and in order: a distant network, simulated. A node whose <c>ConnectionFactory</c> connects through it
/// does everything it does with Redis (connect, position its reader, register connections) slowly, without any change
/// to the node itself.
/// </summary>
public sealed class SlowNetworkProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly int _targetPort;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Socket> _sockets = [];
    private readonly List<Task> _pumps = [];
    private readonly Task _acceptLoop;

    private SlowNetworkProxy(int targetPort, TimeSpan latency)
    {
        _targetPort = targetPort;
        Latency = latency;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = AcceptLoopAsync();
    }

    /// <summary>The one-way delay of every byte.</summary>
    public TimeSpan Latency { get; }

    /// <summary>The loopback port to connect to instead of Redis's.</summary>
    public int Port { get; }

    /// <summary>A StackExchange.Redis connection string that goes through this hop.</summary>
    public string ConnectionString => $"127.0.0.1:{Port},abortConnect=false";

    /// <summary>Starts a hop to the Redis on 127.0.0.1:<paramref name="targetPort"/> that delays each direction by <paramref name="latency"/>.</summary>
    public static SlowNetworkProxy Start(int targetPort, TimeSpan latency) => new(targetPort, latency);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }
        }

        try
        {
            await _acceptLoop;
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }

        Task[] pumps;
        lock (_sockets)
        {
            pumps = [.. _pumps];
        }

        await Task.WhenAll(pumps);
        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            var client = await _listener.AcceptSocketAsync(_stopping.Token);
            var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            client.NoDelay = true;
            lock (_sockets)
            {
                _sockets.Add(client);
                _sockets.Add(server);
            }

            try
            {
                await server.ConnectAsync(new IPEndPoint(IPAddress.Loopback, _targetPort), _stopping.Token);
            }
            catch (SocketException)
            {
                client.Dispose();
                server.Dispose();
                continue;
            }

            lock (_sockets)
            {
                _pumps.Add(PumpAsync(client, server));
                _pumps.Add(PumpAsync(server, client));
            }
        }
    }

    /// <summary>Copies <paramref name="from"/> to <paramref name="to"/>, each chunk <see cref="Latency"/> after it arrived.</summary>
    private async Task PumpAsync(Socket from, Socket to)
    {
        var inFlight = Channel.CreateUnbounded<(long Due, byte[] Bytes)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var deliver = DeliverAsync(inFlight.Reader, to);
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, _stopping.Token);
                if (read == 0)
                {
                    break;
                }

                inFlight.Writer.TryWrite((Stopwatch.GetTimestamp(), buffer.AsSpan(0, read).ToArray()));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            inFlight.Writer.TryComplete();
        }

        await deliver;
    }

    private async Task DeliverAsync(ChannelReader<(long Received, byte[] Bytes)> inFlight, Socket to)
    {
        try
        {
            await foreach (var (received, bytes) in inFlight.ReadAllAsync(_stopping.Token))
            {
                var wait = Latency - Stopwatch.GetElapsedTime(received);
                if (wait > TimeSpan.Zero)
                {
                    // The simulated network's latency, not a synchronisation.
                    await Task.Delay(wait, _stopping.Token);
                }

                await to.SendAsync(bytes, SocketFlags.None, _stopping.Token);
            }

            to.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }
}
