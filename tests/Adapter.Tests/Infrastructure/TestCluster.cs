using System.Diagnostics;
using Microsoft.AspNetCore.SignalR;
using Xunit.Abstractions;
using SignalR.RedisStreams.Internal;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>
/// N real SignalR servers sharing one Redis and one fresh stream name (and key prefix), plus the clients a test
/// connects to them. <see cref="StartAsync"/> returns only once every node's messages reach every other node.
/// </summary>
public sealed class TestCluster : IAsyncDisposable
{
    /// <summary>How long a freshly started cluster may take to form.</summary>
    public static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(20);

    /// <summary>Heartbeat interval the tests run with (short, so that node loss is seen quickly).</summary>
    public static readonly TimeSpan TestHeartbeatInterval = TimeSpan.FromSeconds(1);

    /// <summary>Heartbeat timeout the tests run with.</summary>
    public static readonly TimeSpan TestHeartbeatTimeout = TimeSpan.FromSeconds(3);

    /// <summary>XREAD BLOCK time the tests run with. Shorter than the 1 s default because a node's first publish waits
    /// for its first XREAD to return and a clean stop waits for the blocked XREAD: with the default, every cluster
    /// start and stop costs about a second.</summary>
    public static readonly TimeSpan TestReadBlockTime = TimeSpan.FromMilliseconds(200);

    private static readonly TimeSpan ProbeRetryInterval = TimeSpan.FromMilliseconds(500);

    private readonly List<TestNode> _nodes;
    private readonly List<TestClient> _clients = [];
    private readonly List<TestClient> _probes = [];
    private readonly HubProtocolKind _protocol;
    private readonly ITestOutputHelper? _output;
    private readonly string _flushGroup;
    private int _clientCount;
    private int _flushCount;

    private TestCluster(List<TestNode> nodes, HubProtocolKind protocol, string streamName, string keyPrefix, ITestOutputHelper? output)
    {
        _nodes = nodes;
        _protocol = protocol;
        _output = output;
        _flushGroup = $"flush-{streamName}";
        StreamName = streamName;
        KeyPrefix = keyPrefix;
    }

    /// <summary>The stream name every node of this cluster uses (unique per cluster).</summary>
    public string StreamName { get; }

    /// <summary>The key prefix every node of this cluster uses (unique per cluster).</summary>
    public string KeyPrefix { get; }

    /// <summary>The key of the cluster's (first) stream, which every other key of the backplane starts with: the hash tag
    /// of <see cref="KeyPrefix"/> + <see cref="StreamName"/>.</summary>
    public string StreamKey => new RedisStreamsKeys(KeyPrefix, StreamName).StreamName;

    /// <summary>The nodes, by index.</summary>
    public IReadOnlyList<TestNode> Nodes => _nodes;

    /// <summary>The hub context of node <paramref name="node"/>: what a send or invoke starting on that node uses.</summary>
    public IHubContext<TestHub> Hub(int node) => _nodes[node].HubContext;

    /// <summary>A fresh id that keeps a test's nodes apart from every other test's in the shared Redis.</summary>
    public static string NewIsolationId() => Guid.NewGuid().ToString("N")[..12];

    /// <summary>The test defaults: the stream and key prefix of <paramref name="isolationId"/>, a 1 s heartbeat, a 3 s
    /// timeout and a 200 ms XREAD block.</summary>
    public static void ApplyTestDefaults(RedisStreamsOptions options, string isolationId)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.StreamName = $"test-{isolationId}";
        options.KeyPrefix = $"t{isolationId}:";
        options.HeartbeatInterval = TestHeartbeatInterval;
        options.HeartbeatTimeout = TestHeartbeatTimeout;
        options.ReadBlockTime = TestReadBlockTime;
    }

    /// <summary>Starts <paramref name="nodeCount"/> nodes against <paramref name="redis"/> and waits until they form a cluster.</summary>
    /// <param name="redis">The Redis all nodes share.</param>
    /// <param name="nodeCount">How many servers.</param>
    /// <param name="protocol">The protocol clients speak unless a test asks otherwise.</param>
    /// <param name="output">Where the nodes log (warnings, and the adapter's information).</param>
    /// <param name="configure">Changes to the test defaults (unique stream and prefix, 1 s heartbeat, 3 s timeout, 200 ms XREAD block).</param>
    /// <param name="connectionString">The nodes' connection string, when not <paramref name="redis"/>'s own (e.g. with a user and password).</param>
    public static async Task<TestCluster> StartAsync(
        RedisServer redis,
        int nodeCount,
        HubProtocolKind protocol,
        ITestOutputHelper? output = null,
        Action<RedisStreamsOptions>? configure = null,
        string? connectionString = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        return await StartAsync(connectionString ?? redis.ConnectionString, nodeCount, protocol, output, configure);
    }

    /// <summary>Starts <paramref name="nodeCount"/> nodes that connect with <paramref name="connectionString"/> (e.g. the
    /// endpoints of a Redis Cluster) and waits until they form a cluster.</summary>
    public static async Task<TestCluster> StartAsync(
        string connectionString,
        int nodeCount,
        HubProtocolKind protocol,
        ITestOutputHelper? output = null,
        Action<RedisStreamsOptions>? configure = null)
    {
        var id = NewIsolationId();
        var streamName = $"test-{id}";
        var keyPrefix = $"t{id}:";
        void Configure(RedisStreamsOptions o)
        {
            ApplyTestDefaults(o, id);
            configure?.Invoke(o);
        }

        var clock = Stopwatch.StartNew();
        var nodes = new List<TestNode>();
        TestCluster? cluster = null;
        try
        {
            var starting = Enumerable.Range(0, nodeCount).Select(i => TestNode.StartAsync(i, connectionString, Configure, output)).ToList();
            try
            {
                await Task.WhenAll(starting);
            }
            finally
            {
                nodes.AddRange(starting.Where(t => t.IsCompletedSuccessfully).Select(t => t.Result));
            }

            cluster = new TestCluster(nodes, protocol, streamName, keyPrefix, output);
            var started = clock.Elapsed;
            for (var i = 0; i < nodeCount; i++)
            {
                var probe = await TestClient.ConnectAsync($"probe{i}", i, nodes[i].HubUrl, protocol, user: null);
                cluster._probes.Add(probe);
                await cluster.JoinFlushGroupAsync(probe);
            }

            var probesConnected = clock.Elapsed;
            await cluster.WaitUntilFormedAsync();
            cluster.Trace(
                $"cluster of {nodeCount} on stream '{streamName}': nodes started in {started.TotalMilliseconds:0} ms, " +
                $"probes connected in {probesConnected.TotalMilliseconds:0} ms, formed in {clock.Elapsed.TotalMilliseconds:0} ms");
            return cluster;
        }
        catch
        {
            if (cluster is not null)
            {
                await cluster.DisposeAsync();
            }
            else
            {
                foreach (var node in nodes)
                {
                    await node.DisposeAsync();
                }
            }

            throw;
        }
    }

    /// <summary>Connects a client to node <paramref name="node"/>, as <paramref name="user"/> if given, speaking
    /// <paramref name="protocol"/> (default: the cluster's).</summary>
    public async Task<TestClient> ConnectAsync(int node, string? user = null, HubProtocolKind? protocol = null, string? name = null)
    {
        var number = Interlocked.Increment(ref _clientCount);
        var client = await TestClient.ConnectAsync(name ?? $"client{number}", node, _nodes[node].HubUrl, protocol ?? _protocol, user);
        lock (_clients)
        {
            _clients.Add(client);
        }

        await JoinFlushGroupAsync(client);
        return client;
    }

    /// <summary>Shuts node <paramref name="node"/> down cleanly; the others keep running.</summary>
    public Task StopNodeAsync(int node) => _nodes[node].StopAsync();

    /// <summary>
    /// Returns once every message sent to <paramref name="targets"/> before the call has been delivered, so that a test
    /// can then assert what did NOT arrive (or arrived twice). How: each running node sends a sentinel to a probe on
    /// the next node and waits for it, so everything each node published earlier is in the stream ahead of what
    /// follows; then each running node sends sentinels to every target both directly and through a group all clients
    /// are in, and we wait for all of them. A node reads the stream in order and a connection's messages arrive in
    /// order, so anything sent earlier, by whatever path (a local write or the stream), has arrived by then.
    /// </summary>
    public async Task FlushAsync(params TestClient[] targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var round = Interlocked.Increment(ref _flushCount);
        var running = _nodes.Where(n => n.IsRunning).ToList();

        if (running.Count > 1)
        {
            var hops = new List<Task>();
            for (var i = 0; i < running.Count; i++)
            {
                var probe = _probes[running[(i + 1) % running.Count].Index];
                var token = $"hop-{round}-{running[i].Index}";
                await running[i].HubContext.Clients.Client(probe.ConnectionId).SendAsync(TestClient.SentinelMethod, token);
                hops.Add(probe.WaitForAsync(m => m.Method == TestClient.SentinelMethod && m.Text == token, $"sentinel {token}"));
            }

            await Task.WhenAll(hops);
        }

        var sentinels = new List<Task>();
        foreach (var node in running)
        {
            // Two paths from every node: addressed to each target, and to a group every client is in (a group send
            // may travel through the backplane even to a connection on the sending node).
            var direct = $"flush-{round}-{node.Index}-direct";
            var viaGroup = $"flush-{round}-{node.Index}-group";
            foreach (var target in targets)
            {
                await node.HubContext.Clients.Client(target.ConnectionId).SendAsync(TestClient.SentinelMethod, direct);
            }

            await node.HubContext.Clients.Group(_flushGroup).SendAsync(TestClient.SentinelMethod, viaGroup);
            foreach (var target in targets)
            {
                sentinels.Add(target.WaitForAsync(m => m.Method == TestClient.SentinelMethod && m.Text == direct, $"sentinel {direct}"));
                sentinels.Add(target.WaitForAsync(m => m.Method == TestClient.SentinelMethod && m.Text == viaGroup, $"sentinel {viaGroup}"));
            }
        }

        await Task.WhenAll(sentinels);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        var clock = Stopwatch.StartNew();
        List<TestClient> clients;
        lock (_clients)
        {
            clients = [.. _clients, .. _probes];
        }

        await Task.WhenAll(clients.Select(c => c.DisposeAsync().AsTask()));
        var clientsClosed = clock.Elapsed;
        await Task.WhenAll(_nodes.Select(n => n.DisposeAsync().AsTask()));
        Trace($"cluster disposed: clients closed in {clientsClosed.TotalMilliseconds:0} ms, nodes stopped in {clock.Elapsed.TotalMilliseconds:0} ms");
    }

    private Task JoinFlushGroupAsync(TestClient client) => _nodes[client.Node].HubContext.Groups.AddToGroupAsync(client.ConnectionId, _flushGroup);

    private void Trace(string message)
    {
        try
        {
            _output?.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} [test] {message}");
        }
        catch (InvalidOperationException)
        {
            // The test has finished; its output is closed.
        }
    }

    private async Task WaitUntilFormedAsync()
    {
        var clock = Stopwatch.StartNew();
        foreach (var sender in _nodes)
        {
            while (true)
            {
                await sender.HubContext.Clients.All.SendAsync(TestClient.ProbeMethod, sender.Index);
                try
                {
                    await Task.WhenAll(_probes.Select(p => p.WaitForAsync(
                        m => m.Method == TestClient.ProbeMethod && m.Number == sender.Index,
                        $"a probe from node {sender.Index}",
                        ProbeRetryInterval)));
                    break;
                }
                catch (TimeoutException ex) when (clock.Elapsed >= ReadyTimeout)
                {
                    throw new TimeoutException(
                        $"The {_nodes.Count} nodes did not form a cluster within {ReadyTimeout.TotalSeconds:0} s: a Clients.All " +
                        $"message from node {sender.Index} did not reach every node's client (does the backplane forward between servers?).",
                        ex);
                }
                catch (TimeoutException)
                {
                    // Not every node saw it yet: send another probe.
                }
            }
        }
    }
}
