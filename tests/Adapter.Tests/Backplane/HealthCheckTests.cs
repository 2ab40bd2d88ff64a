using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>The backplane's health check (part of <c>/health</c>): healthy while it reads, unhealthy while Redis is
/// gone, healthy again once it is back.</summary>
public sealed class HealthCheckTests(ITestOutputHelper output)
{
    [Fact]
    public async Task The_health_check_follows_the_reader_through_a_redis_outage()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var cluster = await TestCluster.StartAsync(redis, 1, HubProtocolKind.Json, output);
        var health = cluster.Nodes[0].Services.GetRequiredService<HealthCheckService>();

        async Task<HealthStatus> StatusAsync() => (await health.CheckHealthAsync(r => r.Name == "signalr-redis-streams")).Status;

        Assert.Equal(HealthStatus.Healthy, await StatusAsync());

        await redis.KillAsync();
        await Eventually.TrueAsync(async () => await StatusAsync() == HealthStatus.Unhealthy, "unhealthy while Redis is gone", TimeSpan.FromSeconds(30));

        await redis.RestartAsync();
        await Eventually.TrueAsync(async () => await StatusAsync() == HealthStatus.Healthy, "healthy again once Redis is back", TimeSpan.FromSeconds(30));
    }
}
