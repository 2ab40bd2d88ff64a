using System.Diagnostics;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;

namespace Benchmarks.Soak;

/// <summary>How a soak message is addressed.</summary>
internal enum SendKind
{
    All,
    Room,
    User,
    Direct,
}

/// <summary>One message a soak client sent: who, its number, to what, when the call began and ended, and whether the
/// server acknowledged it (the hub call returned) or the call failed.</summary>
internal sealed class SentMessage(int sender, long seq, SendKind kind, string address, int target, int senderNode, string senderBackplaneId, long start)
{
    public int Sender { get; } = sender;

    public long Seq { get; } = seq;

    public SendKind Kind { get; } = kind;

    /// <summary>The room, user or connection id the message was sent to ("" for All).</summary>
    public string Address { get; } = address;

    /// <summary>The target client of a <see cref="SendKind.User"/> or <see cref="SendKind.Direct"/> message, else -1.</summary>
    public int Target { get; } = target;

    public int SenderNode { get; } = senderNode;

    /// <summary>The backplane id of the node incarnation the sender was connected to.</summary>
    public string SenderBackplaneId { get; } = senderBackplaneId;

    public long Start { get; } = start;

    public long End { get; set; }

    /// <summary>0 = still in flight, 1 = acknowledged, 2 = failed.</summary>
    public int Outcome { get; set; }
}

/// <summary>
/// A soak client: a real SignalR client (WebSockets, JSON) on one node incarnation, in one room, named <c>u&lt;id&gt;</c>.
/// It records every soak message it receives, and sends its own in a loop (<see cref="SoakRun"/>). It does not
/// reconnect: when its node dies the soak replaces it with a new client with a new id.
/// </summary>
internal sealed class SoakClient : IAsyncDisposable
{
    private readonly HubConnection _connection;
    private readonly List<long> _arrivals = [];
    private long _closedAt;

    private SoakClient(int id, NodeProcess node, HubConnection connection)
    {
        Id = id;
        Node = node;
        _connection = connection;
        _connection.On<int, long>(SoakNode.Message, (sender, seq) =>
        {
            lock (_arrivals)
            {
                _arrivals.Add(Key(sender, seq));
            }
        });
        _connection.Closed += _ =>
        {
            Interlocked.CompareExchange(ref _closedAt, Stopwatch.GetTimestamp(), 0);
            return Task.CompletedTask;
        };
    }

    public int Id { get; }

    public NodeProcess Node { get; }

    public string User => "u" + Id;

    public string Room => "r" + (Id % 2);

    public string ConnectionId { get; private set; } = "";

    /// <summary>When the client was connected and in its room: every message sent after this is for it.</summary>
    public long ReadyAt { get; private set; }

    /// <summary>When its connection closed, or 0.</summary>
    public long ClosedAt => Interlocked.Read(ref _closedAt);

    public bool IsOpen => ClosedAt == 0 && _connection.State == HubConnectionState.Connected;

    public long ArrivalCount
    {
        get
        {
            lock (_arrivals)
            {
                return _arrivals.Count;
            }
        }
    }

    public static long Key(int sender, long seq) => ((long)sender << 32) | seq;

    public long[] Arrivals()
    {
        lock (_arrivals)
        {
            return [.. _arrivals];
        }
    }

    public static async Task<SoakClient> ConnectAsync(int id, NodeProcess node)
    {
        var connection = new HubConnectionBuilder()
            .WithUrl($"{node.Url}/soak?user=u{id}", HttpTransportType.WebSockets)
            .Build();
        var client = new SoakClient(id, node, connection);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(45));
        try
        {
            await connection.StartAsync(timeout.Token);
            await connection.InvokeAsync("Join", client.Room, timeout.Token);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        client.ConnectionId = connection.ConnectionId ?? "";
        client.ReadyAt = Stopwatch.GetTimestamp();
        return client;
    }

    /// <summary>Sends one message; true when the server acknowledged it.</summary>
    public async Task<bool> SendAsync(SentMessage message, CancellationToken cancellationToken)
    {
        switch (message.Kind)
        {
            case SendKind.All:
                await _connection.InvokeAsync("All", message.Sender, message.Seq, cancellationToken);
                break;
            case SendKind.Room:
                await _connection.InvokeAsync("Room", message.Address, message.Sender, message.Seq, cancellationToken);
                break;
            case SendKind.User:
                await _connection.InvokeAsync("ToUser", message.Address, message.Sender, message.Seq, cancellationToken);
                break;
            case SendKind.Direct:
                await _connection.InvokeAsync("Direct", message.Address, message.Sender, message.Seq, cancellationToken);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(message));
        }

        return true;
    }

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}
