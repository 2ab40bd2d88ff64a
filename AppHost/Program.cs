using AppHost;
using AppHost.Redis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

// The whole app: Redis, N chat nodes (each its own named resource, so the balancer sees N addresses),
// and a YARP balancer with cookie affinity in front of them. Configuration keys: see AppHostSettings / README.
var builder = DistributedApplication.CreateBuilder(args);

IResourceBuilder<IResourceWithConnectionString> redis;
try
{
    redis = builder.AddChatRedis(AppHostSettings.RedisResourceName);
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
        .WithReference(redis)
        .WaitFor(redis);

    // One service ("chatnode") with N addresses: YARP's service-discovery resolver turns http://chatnode into N destinations.
    loadBalancer
        .WithEnvironment("services__chatnode__http__" + (i - 1).ToString(System.Globalization.CultureInfo.InvariantCulture), node.GetEndpoint("http"))
        .WaitFor(node);
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
