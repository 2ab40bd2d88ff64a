using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using AppHost.Redis;

namespace RedisTestServer;

/// <summary>
/// A private Redis Cluster: <c>masters × (1 + replicas)</c> <c>redis-server --cluster-enabled yes</c> processes on free
/// loopback ports (with a small <c>cluster-node-timeout</c>, so a failover takes about a second), joined by
/// <c>redis-cli --cluster create ... --cluster-replicas n --cluster-yes</c>, and stopped at the end. Offers the faults of
/// the cluster tests: kill (SIGKILL) or pause (SIGSTOP) the master of a slot and wait for its replica to take over, or a
/// manual <c>CLUSTER FAILOVER</c>. Shared by tests/Adapter.Tests and benchmarks/Benchmarks.
/// </summary>
public sealed class RedisCluster : IAsyncDisposable
{
    private const string RedisCliPath = "/usr/bin/redis-cli";
    private static readonly TimeSpan FormTimeout = TimeSpan.FromSeconds(30);

    private readonly List<RedisServer> _servers;
    private string _lastSeen = "";

    private RedisCluster(List<RedisServer> servers, TimeSpan nodeTimeout)
    {
        _servers = servers;
        NodeTimeout = nodeTimeout;
    }

    /// <summary>Every node, masters and replicas, in start order.</summary>
    public IReadOnlyList<RedisServer> Servers => _servers;

    /// <summary>The <c>cluster-node-timeout</c> the nodes run with.</summary>
    public TimeSpan NodeTimeout { get; }

    /// <summary>A StackExchange.Redis connection string naming every node (<c>abortConnect=false</c>).</summary>
    public string ConnectionString =>
        string.Join(',', _servers.Select(s => "127.0.0.1:" + s.Port.ToString(CultureInfo.InvariantCulture))) + ",abortConnect=false";

    /// <summary>Starts the processes, creates the cluster and returns once every node reports <c>cluster_state:ok</c>
    /// and knows every other node.</summary>
    public static async Task<RedisCluster> StartAsync(int masters = 3, int replicasPerMaster = 1, TimeSpan? nodeTimeout = null)
    {
        var timeout = nodeTimeout ?? TimeSpan.FromMilliseconds(1000);
        var servers = new List<RedisServer>();
        var cluster = new RedisCluster(servers, timeout);
        try
        {
            var count = masters * (1 + replicasPerMaster);
            var candidates = ClusterPorts.TryFind(count) ?? throw new InvalidOperationException("No free loopback ports for a Redis Cluster.");
            var ports = new List<int>();
            foreach (var candidate in candidates)
            {
                var server = await StartNodeAsync(candidate, candidates, timeout);
                servers.Add(server);
                ports.Add(server.Port);
            }

            var arguments = new List<string> { "--cluster", "create" };
            arguments.AddRange(ports.Select(p => "127.0.0.1:" + p.ToString(CultureInfo.InvariantCulture)));
            arguments.AddRange(["--cluster-replicas", replicasPerMaster.ToString(CultureInfo.InvariantCulture), "--cluster-yes"]);
            await RunRedisCliAsync(arguments);
            await cluster.WaitUntilAsync(async () =>
            {
                foreach (var server in servers)
                {
                    var info = await server.RawCommandAsync("CLUSTER", "INFO");
                    if (!info.Contains("cluster_state:ok", StringComparison.Ordinal)
                        || !info.Contains("cluster_known_nodes:" + count.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal))
                    {
                        return false;
                    }
                }

                var nodes = await cluster.NodesAsync();
                if (nodes.Count(n => n.IsMaster && n.Slots.Count > 0) != masters || nodes.Count(n => !n.IsMaster) != count - masters)
                {
                    return false;
                }

                // Every replica has synchronised with its master (a replica that never did cannot take over).
                foreach (var replica in nodes.Where(n => !n.IsMaster && n.Server is not null))
                {
                    if (!(await replica.Server!.RawCommandAsync("INFO", "replication")).Contains("master_link_status:up", StringComparison.Ordinal))
                    {
                        return false;
                    }
                }

                return true;
            }, FormTimeout, "the cluster to form");
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts one node on <paramref name="port"/>, or on another free pair of ports if that one was taken
    /// meanwhile ("Address already in use": something else can bind it between the check and redis-server's bind).
    /// <see cref="ClusterPorts"/> keeps both ports below the ephemeral range, where outgoing connections take theirs; this
    /// is the second guard.</summary>
    private static async Task<RedisServer> StartNodeAsync(int port, IReadOnlyCollection<int> chosen, TimeSpan timeout)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await RedisServer.StartClusterNodeAsync(port, timeout);
            }
            catch (IOException) when (attempt < RedisServer.StartAttempts)
            {
                // Another pair, not one picked for a node not started yet.
                var tries = 0;
                do
                {
                    port = ClusterPorts.TryFind(1)?[0] ?? throw new InvalidOperationException("No free loopback ports for a Redis Cluster node.");
                }
                while (chosen.Contains(port) && ++tries < 10);
            }
        }
    }

    /// <summary>The cluster's nodes as one live node sees them (<c>CLUSTER NODES</c>).</summary>
    public async Task<IReadOnlyList<ClusterNode>> NodesAsync()
    {
        foreach (var server in _servers.Where(s => s.IsRunning))
        {
            string reply;
            try
            {
                reply = await server.RawCommandAsync("CLUSTER", "NODES");
            }
            catch (Exception ex) when (ex is IOException or SocketException or TimeoutException)
            {
                continue; // paused or going away: ask another
            }

            return ClusterNode.Parse(reply, _servers);
        }

        throw new InvalidOperationException("No node of the cluster answers CLUSTER NODES.");
    }

    /// <summary>The master that owns <paramref name="slot"/> now.</summary>
    public async Task<RedisServer> MasterOfSlotAsync(int slot)
        => (await NodesAsync()).Single(n => n.IsMaster && !n.Failed && n.Slots.Any(r => slot >= r.Start && slot <= r.End)).Server
           ?? throw new InvalidOperationException($"Slot {slot} has no known master.");

    /// <summary>The masters that own slots now.</summary>
    public async Task<IReadOnlyList<RedisServer>> MastersAsync()
        => [.. (await NodesAsync()).Where(n => n.IsMaster && !n.Failed && n.Slots.Count > 0 && n.Server is not null).Select(n => n.Server!)];

    /// <summary>A replica of <paramref name="master"/>.</summary>
    public async Task<RedisServer> ReplicaOfAsync(RedisServer master)
    {
        ArgumentNullException.ThrowIfNull(master);
        var nodes = await NodesAsync();
        var id = nodes.Single(n => n.Server == master).Id;
        return nodes.First(n => n.MasterId == id && n.Server is not null).Server!;
    }

    /// <summary>Waits until another node than <paramref name="old"/> owns <paramref name="slot"/> as a master and every
    /// running, unpaused node reports <c>cluster_state:ok</c>; returns the new master.</summary>
    public async Task<RedisServer> WaitForNewMasterAsync(int slot, RedisServer old, TimeSpan timeout)
    {
        RedisServer? found = null;
        await WaitUntilAsync(async () =>
        {
            var nodes = await NodesAsync();
            _lastSeen = string.Join(" | ", nodes.Select(n => $"{n.Server?.Port} {(n.IsMaster ? "master" : "replica")}{(n.Failed ? " failed" : "")} {string.Join(',', n.Slots.Select(r => r.Start + "-" + r.End))}"));
            var owner = nodes.FirstOrDefault(n => n.IsMaster && !n.Failed && n.Slots.Any(r => slot >= r.Start && slot <= r.End));
            if (owner?.Server is null || owner.Server == old)
            {
                return false;
            }

            var info = await owner.Server.RawCommandAsync("CLUSTER", "INFO");
            found = owner.Server;
            return info.Contains("cluster_state:ok", StringComparison.Ordinal);
        }, timeout, $"a new master of slot {slot}");
        return found!;
    }

    /// <summary>A manual failover: <c>CLUSTER FAILOVER</c> sent to <paramref name="replica"/>, which takes over its
    /// master's slots once it has every write (no data lost).</summary>
    public static async Task FailoverAsync(RedisServer replica)
    {
        ArgumentNullException.ThrowIfNull(replica);
        var reply = await replica.RawCommandAsync("CLUSTER", "FAILOVER");
        if (!reply.StartsWith("+OK", StringComparison.Ordinal))
        {
            throw new InvalidOperationException("CLUSTER FAILOVER answered: " + reply.Trim());
        }
    }

    /// <summary>Waits until every node that runs again (a killed master restarted, a paused one resumed) sees the whole
    /// cluster healthy again.</summary>
    public Task WaitUntilHealthyAsync(TimeSpan timeout) => WaitUntilAsync(async () =>
    {
        foreach (var server in _servers.Where(s => s.IsRunning))
        {
            if (!(await server.RawCommandAsync("CLUSTER", "INFO")).Contains("cluster_state:ok", StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }, timeout, "the cluster to be healthy");

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        foreach (var server in _servers)
        {
            await server.DisposeAsync();
        }

        _servers.Clear();
    }

    private async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        Exception? last = null;
        while (clock.Elapsed < timeout)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is IOException or SocketException or TimeoutException or InvalidOperationException)
            {
                last = ex;
            }

            // Polling interval of the condition above (bounded by the deadline).
            await Task.Delay(50);
        }

        throw new TimeoutException($"Timed out after {timeout} waiting for {what}. Nodes: {string.Join(" | ", _servers.Select(s => s.Port + (s.IsRunning ? "" : " (down)")))}; last seen: {_lastSeen}", last);
    }

    private static async Task RunRedisCliAsync(IEnumerable<string> arguments)
    {
        var startInfo = new ProcessStartInfo(RedisCliPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = Process.Start(startInfo) ?? throw new InvalidOperationException("Could not run redis-cli.");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(FormTimeout);
        await process.WaitForExitAsync(timeout.Token);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"redis-cli {string.Join(' ', startInfo.ArgumentList)} failed ({process.ExitCode}): {await output} {await error}");
        }
    }
}

/// <summary>One line of <c>CLUSTER NODES</c>: the node's id, its server (when it is one of ours), whether it is a
/// master, and failed, the id of its master (a replica), and its slot ranges.</summary>
public sealed record ClusterNode(string Id, RedisServer? Server, bool IsMaster, bool Failed, string? MasterId, IReadOnlyList<(int Start, int End)> Slots)
{
    internal static List<ClusterNode> Parse(string reply, IReadOnlyList<RedisServer> servers)
    {
        // A bulk string: "$<length>\r\n<lines>\r\n".
        var lines = reply.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Skip(1);
        var nodes = new List<ClusterNode>();
        foreach (var line in lines)
        {
            var parts = line.Split(' ');
            if (parts.Length < 8)
            {
                continue;
            }

            var address = parts[1].Split('@')[0];
            var port = int.Parse(address[(address.LastIndexOf(':') + 1)..], CultureInfo.InvariantCulture);
            var flags = parts[2].Split(',');
            var slots = new List<(int, int)>();
            foreach (var slot in parts.Skip(8).Where(p => !p.StartsWith('[')))
            {
                var range = slot.Split('-');
                var start = int.Parse(range[0], CultureInfo.InvariantCulture);
                slots.Add((start, range.Length > 1 ? int.Parse(range[1], CultureInfo.InvariantCulture) : start));
            }

            nodes.Add(new ClusterNode(
                parts[0],
                servers.FirstOrDefault(s => s.Port == port),
                flags.Contains("master"),
                flags.Contains("fail") || flags.Contains("fail?"),
                parts[3] == "-" ? null : parts[3],
                slots));
        }

        return nodes;
    }
}
