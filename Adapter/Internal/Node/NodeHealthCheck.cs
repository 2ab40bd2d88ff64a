using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace SignalR.RedisStreams.Internal;

/// <summary>Healthy when the node reads a reachable Redis and keeps up; Degraded when it lags; Unhealthy when it
/// cannot read.</summary>
internal sealed class NodeHealthCheck(BackplaneNode node) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object>
        {
            ["node"] = node.NodeId,
            ["live_nodes"] = node.Membership.LiveCount,
            ["outbox_depth"] = node.Publisher.OutboxDepth,
            ["read_lag_ms"] = node.Reader.LastReadLag.TotalMilliseconds,
        };
        if (!node.Reader.IsPositioned)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("The backplane has not read the stream yet (Redis unreachable?).", data: data));
        }
        var sinceRead = node.Reader.SinceLastRead;
        var allowed = node.Options.ReadBlockTime + TimeSpan.FromSeconds(5);
        if (sinceRead > allowed)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy($"No XREAD completed for {sinceRead.TotalSeconds:F1} s (Redis unreachable?).", data: data));
        }
        if (node.Reader.LastReadLag > node.Options.HealthyReadLag)
        {
            return Task.FromResult(HealthCheckResult.Degraded($"The reader is {node.Reader.LastReadLag.TotalMilliseconds:F0} ms behind the stream.", data: data));
        }
        return Task.FromResult(HealthCheckResult.Healthy("Reading the stream.", data));
    }
}
