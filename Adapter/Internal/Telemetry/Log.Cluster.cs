using Microsoft.Extensions.Logging;

namespace SignalR.RedisStreams.Internal;

/// <summary>The log messages of running on a Redis Cluster (event ids from 60).</summary>
internal static partial class Log
{
    [LoggerMessage(60, LogLevel.Information, "Redis Cluster: the slot of '{Key}' maps to {Endpoint}, which is {State}; reloading the cluster's topology ({Connection}).")]
    public static partial void ClusterTopologyStale(ILogger logger, string key, string endpoint, string state, string connection);

    [LoggerMessage(61, LogLevel.Warning, "Redis Cluster: reloading the cluster's topology failed ({Connection}).")]
    public static partial void ClusterTopologyReloadFailed(ILogger logger, Exception exception, string connection);

    [LoggerMessage(62, LogLevel.Information, "Redis Cluster: the slot of '{Key}' moved from {From} to {To} ({Connection}); appends and reads still waiting on the old master are sent again.")]
    public static partial void ClusterSlotMoved(ILogger logger, string key, string from, string to, string connection);
}
