using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>
/// A real SignalR client (WebSockets, JSON or MessagePack) connected to one test node. It records every message it
/// receives, in order, and lets a test wait for a given one with a deadline. It answers the client-result methods
/// "GetNumber" (through <see cref="OnGetNumber"/>) and "GetText".
/// </summary>
public sealed class TestClient : IAsyncDisposable
{
    /// <summary>Client method of ordinary test messages: one string.</summary>
    public const string SendMethod = "Send";

    /// <summary>Client method the hub's Echo answers with: one string.</summary>
    public const string EchoMethod = "Echo";

    /// <summary>Client method with several argument types (string, int, double), to check encodings.</summary>
    public const string RichMethod = "Rich";

    /// <summary>Client method of the sentinels <see cref="TestCluster.FlushAsync"/> sends: one string.</summary>
    public const string SentinelMethod = "Sentinel";

    /// <summary>Client method of the cluster readiness probes: the sending node's index.</summary>
    public const string ProbeMethod = "Probe";

    /// <summary>Client-result method: takes a string, returns an int computed by <see cref="OnGetNumber"/>.</summary>
    public const string GetNumberMethod = "GetNumber";

    /// <summary>Client-result method: takes a string, returns a string (used to send back a result of the wrong type).</summary>
    public const string GetTextMethod = "GetText";

    private readonly HubConnection _connection;
    private string? _connectionId;
    private readonly Arrivals<ReceivedMessage> _messages = new();
    private readonly TaskCompletionSource<Exception?> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private TestClient(string name, int node, HubProtocolKind protocol, string? user, HubConnection connection)
    {
        Name = name;
        Node = node;
        Protocol = protocol;
        User = user;
        _connection = connection;
        _connection.On<string>(SendMethod, text => Record(new ReceivedMessage(SendMethod, text)));
        _connection.On<string>(EchoMethod, text => Record(new ReceivedMessage(EchoMethod, text)));
        _connection.On<string, int, double>(RichMethod, (text, number, value) => Record(new ReceivedMessage(RichMethod, text, number, value)));
        _connection.On<string>(SentinelMethod, token => Record(new ReceivedMessage(SentinelMethod, token)));
        _connection.On<int>(ProbeMethod, sender => Record(new ReceivedMessage(ProbeMethod, "", sender)));
        _connection.On<string, int>(GetNumberMethod, argument => OnGetNumber(argument));
        _connection.On<string, string>(GetTextMethod, argument => "not a number: " + argument);
        _connection.Closed += exception =>
        {
            _closed.TrySetResult(exception);
            return Task.CompletedTask;
        };
    }

    /// <summary>A name for failure messages.</summary>
    public string Name { get; }

    /// <summary>Index of the node the client is connected to.</summary>
    public int Node { get; }

    /// <summary>The protocol the client speaks.</summary>
    public HubProtocolKind Protocol { get; }

    /// <summary>The user id the client connected as (the <c>user</c> query string), if any.</summary>
    public string? User { get; }

    /// <summary>The server-assigned connection id (from negotiation), kept after the connection closes.</summary>
    public string ConnectionId => _connectionId ?? throw new InvalidOperationException($"{Name} has no connection id.");

    /// <summary>The underlying hub connection, to invoke hub methods.</summary>
    public HubConnection Connection => _connection;

    /// <summary>Completes when the connection has closed (with the close exception, if any).</summary>
    public Task<Exception?> Closed => _closed.Task;

    /// <summary>Makes "GetNumber" answers wait until the returned hold is released or disposed, so that a test can act
    /// while a client-result invocation is pending. <see cref="HeldAnswer.Invoked"/> completes when one arrived.</summary>
    public HeldAnswer HoldGetNumber()
    {
        var held = new HeldAnswer();
        OnGetNumber = held.AnswerAsync;
        return held;
    }

    /// <summary>Computes the answer to a "GetNumber" client-result invocation. Default: the argument's length.</summary>
    public Func<string, Task<int>> OnGetNumber { get; set; } = argument => Task.FromResult(argument.Length);

    /// <summary>Every message received so far, in arrival order.</summary>
    public IReadOnlyList<ReceivedMessage> Messages => _messages.Snapshot();

    /// <summary>The texts of the "Send" messages received so far, in arrival order.</summary>
    public IReadOnlyList<string> Texts => [.. Messages.Where(m => m.Method == SendMethod).Select(m => m.Text)];

    /// <summary>Connects a client to <paramref name="hubUrl"/> and waits until the server has registered the connection.
    /// (SignalR answers the handshake before it calls the lifetime manager's <c>OnConnectedAsync</c>, so a started client
    /// is not yet known to the server; a hub method's answer is the proof that it is.)</summary>
    public static async Task<TestClient> ConnectAsync(string name, int node, string hubUrl, HubProtocolKind protocol, string? user)
    {
        var url = user is null ? hubUrl : $"{hubUrl}?user={Uri.EscapeDataString(user)}";
        var builder = new HubConnectionBuilder().WithUrl(url, HttpTransportType.WebSockets);
        if (protocol == HubProtocolKind.MessagePack)
        {
            builder.AddMessagePackProtocol();
        }

        var client = new TestClient(name, node, protocol, user, builder.Build());
        using var timeout = new CancellationTokenSource(Eventually.DefaultTimeout);
        await client._connection.StartAsync(timeout.Token);
        client._connectionId = client._connection.ConnectionId;
        var echoed = await client._connection.InvokeAsync<string>(nameof(TestHub.Ping), timeout.Token);
        if (echoed != client._connectionId)
        {
            throw new InvalidOperationException($"{name}: the server says its connection id is '{echoed}', the client says '{client._connectionId}'.");
        }

        return client;
    }

    /// <summary>Waits until a message matching <paramref name="match"/> has been received (maybe already) and returns the first such.</summary>
    public Task<ReceivedMessage> WaitForAsync(Func<ReceivedMessage, bool> match, string what, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(match);
        var limit = timeout ?? Eventually.DefaultTimeout;
        return _messages.WaitForAsync(match, limit, () =>
            $"{Name} (node {Node}, {Protocol}) did not receive {what} within {limit.TotalSeconds:0.#} s. " +
            $"Received: [{string.Join(", ", Messages.Select(m => $"{m.Method}:{m.Text}"))}]");
    }

    /// <summary>Waits for a "Send" message carrying <paramref name="text"/>.</summary>
    public Task<ReceivedMessage> WaitForTextAsync(string text, TimeSpan? timeout = null)
        => WaitForAsync(m => m.Method == SendMethod && m.Text == text, $"\"{text}\"", timeout);

    /// <summary>True when a "Send" message with <paramref name="text"/> has been received.</summary>
    public bool HasReceived(string text) => Texts.Contains(text);

    /// <summary>Stops the connection (a clean client-side disconnect).</summary>
    public async Task StopAsync()
    {
        using var timeout = new CancellationTokenSource(Eventually.DefaultTimeout);
        await _connection.StopAsync(timeout.Token);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await _connection.DisposeAsync();

    /// <inheritdoc />
    public override string ToString() => $"{Name} (node {Node}, {Protocol}, {_connectionId})";

    private void Record(ReceivedMessage message) => _messages.Add(message);
}

/// <summary>A "GetNumber" answer held back by <see cref="TestClient.HoldGetNumber"/>; disposing it answers 0.</summary>
public sealed class HeldAnswer : IDisposable
{
    private readonly TaskCompletionSource _invoked = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _answer = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when the client has received a "GetNumber" invocation.</summary>
    public Task Invoked => _invoked.Task;

    /// <summary>Lets the held answers go, with <paramref name="value"/>.</summary>
    public void Release(int value) => _answer.TrySetResult(value);

    /// <inheritdoc />
    public void Dispose() => Release(0);

    internal Task<int> AnswerAsync(string argument)
    {
        _invoked.TrySetResult();
        return _answer.Task;
    }
}
