using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>One invocation a <see cref="RawJsonHubClient"/> received from the server.</summary>
/// <param name="InvocationId">The id the server expects the completion to carry (null for a plain send).</param>
/// <param name="Target">The client method.</param>
/// <param name="Arguments">The arguments, as JSON.</param>
public sealed record RawInvocation(string? InvocationId, string Target, string Arguments);

/// <summary>
/// A SignalR client written by hand: a WebSocket (no negotiation) speaking the JSON hub protocol frame by frame. Unlike
/// the .NET client it shows a test the invocation id of each client-result invocation and lets it answer with any
/// completion it likes, when it likes.
/// </summary>
public sealed class RawJsonHubClient : IAsyncDisposable
{
    private const char RecordSeparator = '\u001e';

    private readonly ClientWebSocket _socket = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly Arrivals<RawInvocation> _invocations = new();
    private readonly Dictionary<string, TaskCompletionSource<JsonElement>> _calls = new(StringComparer.Ordinal);
    private readonly MemoryStream _partial = new();
    private Task? _receiveLoop;
    private int _nextCallId;

    private RawJsonHubClient(string name) => Name = name;

    /// <summary>A name for failure messages.</summary>
    public string Name { get; }

    /// <summary>The server's id for this connection (what its Ping answered).</summary>
    public string ConnectionId { get; private set; } = "";

    /// <summary>Connects to <paramref name="hubUrl"/> (http://…/hub), does the JSON handshake, and returns once the
    /// server's hub answered Ping, i.e. once the server knows the connection.</summary>
    public static async Task<RawJsonHubClient> ConnectAsync(string name, string hubUrl)
    {
        ArgumentNullException.ThrowIfNull(hubUrl);
        var client = new RawJsonHubClient(name);
        try
        {
            using var timeout = new CancellationTokenSource(Eventually.DefaultTimeout);
            var uri = new Uri("ws" + hubUrl["http".Length..]);
            await client._socket.ConnectAsync(uri, timeout.Token);
            await client.SendFrameAsync("""{"protocol":"json","version":1}""");
            var handshake = await client.ReceiveFramesAsync(timeout.Token);
            if (handshake.Count == 0 || handshake[0] != "{}")
            {
                throw new InvalidOperationException($"{name}: the server's handshake answer was [{string.Join(", ", handshake)}], not {{}}.");
            }

            client._receiveLoop = Task.Run(() => client.ReceiveLoopAsync(handshake.Skip(1).ToList()));
            var connectionId = await Eventually.WithinAsync(client.InvokeAsync(nameof(TestHub.Ping)), $"{name}: Ping's answer");
            client.ConnectionId = connectionId.GetString() ?? throw new InvalidOperationException($"{name}: Ping answered null.");
            return client;
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    /// <summary>Waits until the server has invoked <paramref name="target"/> on this client (maybe already) and returns the first such invocation.</summary>
    public Task<RawInvocation> WaitForInvocationAsync(string target, TimeSpan? timeout = null)
    {
        var limit = timeout ?? Eventually.DefaultTimeout;
        return _invocations.WaitForAsync(i => i.Target == target, limit,
            () => $"{Name} did not receive an invocation of '{target}' within {limit.TotalSeconds:0.#} s.");
    }

    /// <summary>Sends the completion of <paramref name="invocationId"/> with <paramref name="result"/>, as this connection.</summary>
    public Task SendResultAsync(string invocationId, int result)
        => SendFrameAsync(JsonSerializer.Serialize(new { type = 3, invocationId, result }));

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_socket.State == WebSocketState.Open)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", timeout.Token);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
        }

        await _stopping.CancelAsync();
        if (_receiveLoop is not null)
        {
            await _receiveLoop;
        }

        _socket.Dispose();
        _partial.Dispose();
        _sendLock.Dispose();
        _stopping.Dispose();
    }

    /// <summary>Invokes hub method <paramref name="method"/> (no arguments) and returns its result.</summary>
    private async Task<JsonElement> InvokeAsync(string method)
    {
        var id = $"call-{Interlocked.Increment(ref _nextCallId)}";
        var call = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            _calls[id] = call;
        }

        await SendFrameAsync(JsonSerializer.Serialize(new { type = 1, invocationId = id, target = method, arguments = Array.Empty<object>() }));
        return await call.Task;
    }

    private async Task SendFrameAsync(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json + RecordSeparator);
        await _sendLock.WaitAsync();
        try
        {
            using var timeout = new CancellationTokenSource(Eventually.DefaultTimeout);
            await _socket.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, timeout.Token);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Reads from the socket until at least one whole frame arrived and returns the whole frames (without the
    /// separators); a partial frame waits for the next read. Empty when the server closed.</summary>
    private async Task<List<string>> ReceiveFramesAsync(CancellationToken cancellationToken)
    {
        var buffer = new byte[8 * 1024];
        while (true)
        {
            var result = await _socket.ReceiveAsync(buffer, cancellationToken);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return [];
            }

            _partial.Write(buffer, 0, result.Count);
            var bytes = _partial.ToArray();
            var end = Array.LastIndexOf(bytes, (byte)RecordSeparator);
            if (end < 0)
            {
                continue;
            }

            _partial.SetLength(0);
            _partial.Write(bytes, end + 1, bytes.Length - end - 1);
            return [.. Encoding.UTF8.GetString(bytes, 0, end).Split(RecordSeparator, StringSplitOptions.RemoveEmptyEntries)];
        }
    }

    private async Task ReceiveLoopAsync(List<string> pending)
    {
        try
        {
            foreach (var frame in pending)
            {
                Handle(frame);
            }

            while (!_stopping.IsCancellationRequested)
            {
                var frames = await ReceiveFramesAsync(_stopping.Token);
                if (frames.Count == 0)
                {
                    return; // the server closed
                }

                foreach (var frame in frames)
                {
                    Handle(frame);
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            lock (_gate)
            {
                foreach (var call in _calls.Values)
                {
                    call.TrySetException(new IOException($"{Name}: the connection closed before the answer."));
                }
            }
        }
    }

    private void Handle(string frame)
    {
        using var document = JsonDocument.Parse(frame);
        var root = document.RootElement;
        var type = root.GetProperty("type").GetInt32();
        var invocationId = root.TryGetProperty("invocationId", out var id) ? id.GetString() : null;
        switch (type)
        {
            case 1: // Invocation
                var invocation = new RawInvocation(invocationId, root.GetProperty("target").GetString() ?? "", root.GetProperty("arguments").GetRawText());
                _invocations.Add(invocation);
                break;
            case 3: // Completion of a hub method this client invoked
                TaskCompletionSource<JsonElement>? call;
                lock (_gate)
                {
                    _calls.Remove(invocationId ?? "", out call);
                }

                if (root.TryGetProperty("error", out var error))
                {
                    call?.TrySetException(new InvalidOperationException($"{Name}: the hub method failed: {error.GetString()}"));
                }
                else
                {
                    call?.TrySetResult(root.TryGetProperty("result", out var result) ? result.Clone() : default);
                }

                break;
            default: // Ping (6), Close (7), …: nothing to do
                break;
        }
    }
}
