using AppHost;
using AppHost.Faults;
using AppHost.Redis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

// The whole app: Redis, N chat nodes (each its own named resource, so the balancer sees N addresses),
// a YARP balancer with cookie affinity in front of them, and a load generator. Fault commands for the dashboard on
// redis and on each node (Faults/). Configuration keys: see AppHostSettings / README.
var builder = DistributedApplication.CreateBuilder(args);

IResourceBuilder<IResourceWithConnectionString> redis;
IResourceBuilder<ExecutableResource>? clusterCreate = null; // Redis:Topology=cluster: the step that forms the cluster
try
{
    if (RedisClusterHosting.IsCluster(builder))
    {
        (redis, clusterCreate) = builder.AddChatRedisCluster(AppHostSettings.RedisResourceName);
    }
    else
    {
        redis = builder.AddChatRedis(AppHostSettings.RedisResourceName);
    }
}
catch (RedisHostingException ex)
{
    await Console.Error.WriteLineAsync("error: " + ex.Message);
    return 1;
}

var nodeCount = builder.Configuration.GetValue(AppHostSettings.ChatNodesKey, AppHostSettings.DefaultChatNodes);
if (nodeCount < 1)
{
    await Console.Error.WriteLineAsync($"error: {AppHostSettings.ChatNodesKey} must be at least 1, not {nodeCount}.");
    return 1;
}

var trafficRate = builder.Configuration.GetValue(AppHostSettings.TrafficRateKey, 0.0);
if (trafficRate is < 0 or > AppHostSettings.MaxTrafficRate)
{
    await Console.Error.WriteLineAsync($"error: {AppHostSettings.TrafficRateKey} must be 0 (off) to {AppHostSettings.MaxTrafficRate} messages/s, not {trafficRate}.");
    return 1;
}

var recovery = builder.Configuration.GetValue(AppHostSettings.RecoveryKey, true);
var maxDisconnection = builder.Configuration[AppHostSettings.MaxDisconnectionKey];

var loadBalancer = builder.AddProject<Projects.LoadBalancer>(AppHostSettings.LoadBalancerResourceName, options => options.ExcludeLaunchProfile = true)
    .WithHttpEndpoint(name: "http")
    .WithExternalHttpEndpoints()
    .WithHttpHealthCheck("/health");

for (var i = 1; i <= nodeCount; i++)
{
    var name = AppHostSettings.ChatNodeResourceName(i);
    var node = builder.AddProject<Projects.ChatNode>(name, options => options.ExcludeLaunchProfile = true)
        .WithHttpEndpoint(name: "http")
        .WithHttpHealthCheck("/health")
        .WithEnvironment("CHATNODE_NAME", name)
        // On the cluster: three streams, one per master; connection-state recovery needs one stream (README).
        .WithEnvironment("RedisStreams__ConnectionStateRecovery", recovery && clusterCreate is null ? "true" : "false")
        .WithEnvironment("RedisStreams__StreamCount", clusterCreate is null ? "1" : RedisClusterHosting.Masters.ToString(System.Globalization.CultureInfo.InvariantCulture))
        .WithKillCommand();
    if (clusterCreate is null)
    {
        node.WaitFor(redis);
    }
    else
    {
        node.WaitForCompletion(clusterCreate);
    }
    if (redis.Resource is RedisServerResource local)
    {
        // The local redis-server: the nodes connect as their least-privilege ACL user (ChatRedisAcl), not the default user.
        node.WithEnvironment("ConnectionStrings__" + AppHostSettings.RedisResourceName, local.ChatConnectionStringExpression);
        if (local.Tls is { } tls)
        {
            // Redis over TLS: the nodes trust the run's certificate authority for Redis only.
            node.WithEnvironment("Redis__CaCertificate", tls.CaCertificate);
        }
    }
    else
    {
        node.WithReference(redis);
    }

    if (!string.IsNullOrEmpty(maxDisconnection))
    {
        node.WithEnvironment("RedisStreams__MaxDisconnectionDuration", maxDisconnection);
    }

    // One service ("chatnode") with N addresses: YARP's service-discovery resolver turns http://chatnode into N destinations.
    loadBalancer
        .WithEnvironment("services__chatnode__http__" + (i - 1).ToString(System.Globalization.CultureInfo.InvariantCulture), node.GetEndpoint("http"))
        .WaitFor(node);
}

// Live traffic for the dashboard: a few simulated users, one per node, sending to a room through the balancer and
// counting what arrives. Off unless Traffic:Rate > 0 or started from the dashboard.
var traffic = builder.AddProject<Projects.TrafficGenerator>(AppHostSettings.TrafficResourceName, options => options.ExcludeLaunchProfile = true)
    .WithReference(loadBalancer)
    .WaitFor(loadBalancer)
    .WithEnvironment("Traffic__Rate", (trafficRate > 0 ? trafficRate : AppHostSettings.DefaultTrafficRate).ToString(System.Globalization.CultureInfo.InvariantCulture))
    .WithEnvironment("Traffic__Users", nodeCount.ToString(System.Globalization.CultureInfo.InvariantCulture));
if (trafficRate == 0)
{
    traffic.WithExplicitStart();
}

loadBalancer.OnResourceReady((resource, readyEvent, _) =>
{
    var logger = readyEvent.Services.GetRequiredService<ILoggerFactory>().CreateLogger("ReferenceApp");
    var url = resource.GetEndpoint("http").Url;
    AppHostLog.ChatPageReady(logger, url);
    return Task.CompletedTask;
});

await builder.Build().RunAsync();
return 0;
