namespace SignalR.RedisStreams;

/// <summary>Names under which the backplane reports traces and metrics.</summary>
public static class RedisStreamsTelemetry
{
    /// <summary>The <see cref="System.Diagnostics.ActivitySource"/> name: a producer span per publish (XADD), a consumer
    /// span per entry received and dispatched on each node, parented to the producer span.</summary>
    public const string ActivitySourceName = "SignalR.RedisStreams";

    /// <summary>The <see cref="System.Diagnostics.Metrics.Meter"/> name (instruments prefixed <c>signalr.redis_streams.</c>).</summary>
    public const string MeterName = "SignalR.RedisStreams";
}
