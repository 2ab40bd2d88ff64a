using System.Net.Sockets;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace AppHost.Redis;

/// <summary>
/// Healthy when the Redis behind <see cref="RedisServerResource.PrimaryEndpoint"/> answers <c>AUTH</c> + <c>PING</c>
/// with <c>OK</c> / <c>PONG</c>. Speaks RESP over a fresh TCP connection, so it never reports a cached state.
/// </summary>
internal sealed class RedisPingHealthCheck(RedisServerResource resource) : IHealthCheck
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (!resource.PrimaryEndpoint.IsAllocated)
        {
            return HealthCheckResult.Unhealthy("The Redis endpoint is not allocated yet.");
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Timeout);
        try
        {
            await using var redis = await RedisCommandClient.ConnectAsync(resource, timeout.Token);
            var reply = await redis.ExecuteAsync(timeout.Token, "PING");
            return reply == "PONG"
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy("Redis answered PING with: " + (reply ?? "(connection closed)"));
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or RedisCommandException)
        {
            return HealthCheckResult.Unhealthy("Redis does not answer PING.", ex);
        }
    }
}
