using System.Globalization;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace AppHost.Redis;

/// <summary>
/// <c>Redis:Topology=cluster</c>: a real local Redis Cluster of 3 masters and 3 replicas. Six <c>redis-server
/// --cluster-enabled yes</c> processes (<c>redis-1</c> .. <c>redis-6</c> on the dashboard) on fixed loopback ports chosen
/// at start (a cluster node announces its own port to clients, so Aspire's endpoint proxy cannot sit in front of them),
/// with a small <c>cluster-node-timeout</c> (1 s) so that a killed master's replica takes over in seconds; then
/// <c>redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes</c> (<c>redis-cluster-create</c>, which exits
/// once the cluster is formed). The connection string <c>redis</c> names all six nodes. Every node requires the same
/// generated password (<c>--requirepass</c>, <c>--masterauth</c> for the replicas); the chat nodes use the default user
/// (the least-privilege ACL user of the single Redis is not set up on the cluster).
/// </summary>
public static class RedisClusterHosting
{
    /// <summary>Configuration key of the topology: <c>single</c> (default) or <c>cluster</c>.</summary>
    public const string TopologyKey = "Redis:Topology";

    /// <summary>The resource that creates the cluster and exits.</summary>
    public const string CreateResourceName = "redis-cluster-create";

    /// <summary>Masters of the local cluster.</summary>
    public const int Masters = 3;

    /// <summary>Nodes of the local cluster (each master has one replica).</summary>
    public const int NodeCount = Masters * 2;

    /// <summary>Name of the <paramref name="index"/>-th node (1-based): <c>redis-1</c> .. <c>redis-6</c>.</summary>
    public static string NodeResourceName(int index) => "redis-" + index.ToString(CultureInfo.InvariantCulture);

    /// <summary>True when the configuration asks for the cluster; throws <see cref="RedisHostingException"/> on an
    /// unknown topology.</summary>
    public static bool IsCluster(IDistributedApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var topology = (builder.Configuration[TopologyKey] ?? "single").Trim().ToLowerInvariant();
        return topology switch
        {
            "single" => false,
            "cluster" => true,
            _ => throw new RedisHostingException($"{TopologyKey} must be 'single' or 'cluster', not '{topology}'."),
        };
    }

    /// <summary>Adds the six nodes and the resource that joins them; returns the connection string resource
    /// <paramref name="name"/> and the create resource, which the chat nodes wait for (<c>WaitForCompletion</c>).</summary>
    public static (IResourceBuilder<IResourceWithConnectionString> ConnectionString, IResourceBuilder<ExecutableResource> Create) AddChatRedisCluster(
        this IDistributedApplicationBuilder builder, string name)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var redisServer = ContainerRuntimeProbe.FindOnPath("redis-server")
            ?? throw new RedisHostingException("Redis:Topology=cluster needs `redis-server` on PATH (sudo apt-get install redis-server).");
        var redisCli = ContainerRuntimeProbe.FindOnPath("redis-cli")
            ?? throw new RedisHostingException("Redis:Topology=cluster needs `redis-cli` on PATH (sudo apt-get install redis-tools).");

        var dataDirectory = RedisHostingExtensions.CreateDataDirectory(builder.AppHostDirectory);
        var password = ParameterResourceBuilderExtensions.CreateDefaultPasswordParameter(builder, $"{name}-password", special: false);
        var ports = ClusterPorts.TryFind(NodeCount) ?? throw new RedisHostingException("No free loopback ports for the local Redis Cluster.");
        var nodes = new List<IResourceBuilder<ExecutableResource>>();
        for (var i = 0; i < NodeCount; i++)
        {
            var port = ports[i];
            var nodeName = NodeResourceName(i + 1);
            var directory = Directory.CreateDirectory(Path.Combine(dataDirectory, nodeName)).FullName;
            var healthCheckKey = nodeName + "_ping";
            builder.Services.AddHealthChecks().Add(new HealthCheckRegistration(
                healthCheckKey, _ => new ClusterNodePingHealthCheck(port, password), failureStatus: null, tags: null));
            var portText = port.ToString(CultureInfo.InvariantCulture);
            nodes.Add(builder.AddExecutable(nodeName, redisServer, directory)
                .WithEndpoint(port: port, targetPort: port, scheme: "tcp", name: "tcp", isProxied: false)
                .WithArgs(context =>
                {
                    foreach (var arg in new[]
                    {
                        "--port", portText, "--bind", "127.0.0.1",
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", Path.Combine(directory, "nodes.conf"),
                        "--cluster-node-timeout", "1000",
                        // A replica takes over however long its link was down, and the other masters' slots stay
                        // served while one fails over (availability first: what the backplane's repair is for).
                        "--cluster-replica-validity-factor", "0",
                        "--cluster-require-full-coverage", "no",
                        "--dir", directory,
                        "--save", "", "--appendonly", "no",
                    })
                    {
                        context.Args.Add(arg);
                    }
                    context.Args.Add("--requirepass");
                    context.Args.Add(password);
                    context.Args.Add("--masterauth");
                    context.Args.Add(password);
                })
                .WithHealthCheck(healthCheckKey));
        }

        var create = builder.AddExecutable(CreateResourceName, redisCli, dataDirectory)
            .WithArgs(context =>
            {
                context.Args.Add("--cluster");
                context.Args.Add("create");
                foreach (var port in ports)
                {
                    context.Args.Add("127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture));
                }
                context.Args.Add("--cluster-replicas");
                context.Args.Add("1");
                context.Args.Add("--cluster-yes");
                context.Args.Add("--no-auth-warning");
                context.Args.Add("-a");
                context.Args.Add(password);
            });
        foreach (var node in nodes)
        {
            create.WaitFor(node);
        }

        var endpoints = string.Join(',', ports.Select(p => "127.0.0.1:" + p.ToString(CultureInfo.InvariantCulture)));
        var connectionString = builder.AddConnectionString(name, ReferenceExpression.Create($"{endpoints},password={password},abortConnect=false"));
        return (connectionString, create);
    }

    /// <summary>Healthy when the node answers <c>AUTH</c> + <c>PING</c>.</summary>
    private sealed class ClusterNodePingHealthCheck(int port, ParameterResource password) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(3));
            try
            {
                var secret = await password.GetValueAsync(timeout.Token) ?? "";
                await using var redis = await RedisCommandClient.ConnectAsync("127.0.0.1", port, secret, timeout.Token);
                return await redis.ExecuteAsync(timeout.Token, "PING") == "PONG"
                    ? HealthCheckResult.Healthy()
                    : HealthCheckResult.Unhealthy("The node did not answer PING.");
            }
            catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or RedisCommandException)
            {
                return HealthCheckResult.Unhealthy("The node does not answer PING.", ex);
            }
        }
    }
}
