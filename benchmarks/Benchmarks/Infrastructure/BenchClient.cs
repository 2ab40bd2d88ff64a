using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;

namespace Benchmarks.Infrastructure;

/// <summary>A real SignalR client (WebSockets, JSON) connected to one node. Each scenario plugs its own handler in;
/// handlers run on the connection's receive loop and must be quick.</summary>
internal sealed class BenchClient : IAsyncDisposable
{
    /// <summary>Throughput message: round, sequence number, send timestamp (<see cref="Stopwatch.GetTimestamp"/>), text.</summary>
    public const string ThroughputMethod = "T";

    /// <summary>Latency ping: round, sequence number.</summary>
    public const string PingMethod = "L";

    /// <summary>Outage message: sender node, sequence number.</summary>
    public const string OutageMethod = "O";

    /// <summary>Cluster probe: a token.</summary>
    public const string ProbeMethod = "P";

    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(15);

    private readonly HubConnection _connection;
    private readonly ConcurrentDictionary<string, bool> _probes = new(StringComparer.Ordinal);
    private volatile bool _closed;

    private BenchClient(int node, HubConnection connection)
    {
        Node = node;
        _connection = connection;
        _connection.On<int, long, long, string>(ThroughputMethod, (round, seq, sentAt, _) =>
            Throughput?.Invoke(round, seq, Stopwatch.GetTimestamp() - sentAt));
        _connection.On<int, long>(PingMethod, (round, seq) => Ping?.Invoke(round, seq, Stopwatch.GetTimestamp()));
        _connection.On<int, long>(OutageMethod, (sender, seq) => Outage?.Invoke(sender, seq));
        _connection.On<string>(ProbeMethod, token => _probes[token] = true);
        _connection.Closed += _ =>
        {
            _closed = true;
            return Task.CompletedTask;
        };
    }

    /// <summary>The node the client is connected to.</summary>
    public int Node { get; }

    /// <summary>The server's id for this connection (for <c>Clients.Client(id)</c> and groups).</summary>
    public string ConnectionId => _connection.ConnectionId ?? throw new InvalidOperationException("The client is not connected.");

    /// <summary>True once the connection closed (it does not reconnect).</summary>
    public bool Closed => _closed;

    /// <summary>Called for each throughput message: round, sequence number, latency in Stopwatch ticks.</summary>
    public Action<int, long, long>? Throughput { get; set; }

    /// <summary>Called for each latency ping: round, sequence number, arrival timestamp.</summary>
    public Action<int, long, long>? Ping { get; set; }

    /// <summary>Called for each outage message: sender node, sequence number.</summary>
    public Action<int, long>? Outage { get; set; }

    public bool HasProbe(string token) => _probes.ContainsKey(token);

    public static async Task<BenchClient> ConnectAsync(int node, string hubUrl)
    {
        var connection = new HubConnectionBuilder().WithUrl(hubUrl, HttpTransportType.WebSockets).Build();
        var client = new BenchClient(node, connection);
        using var timeout = new CancellationTokenSource(ConnectTimeout);
        await connection.StartAsync(timeout.Token);
        return client;
    }

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}
