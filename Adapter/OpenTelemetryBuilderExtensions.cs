using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using SignalR.RedisStreams;

namespace OpenTelemetry;

/// <summary>Registers the backplane's traces and metrics with OpenTelemetry.</summary>
public static class RedisStreamsOpenTelemetryExtensions
{
    /// <summary>Collects the backplane's spans (<see cref="RedisStreamsTelemetry.ActivitySourceName"/>).</summary>
    public static TracerProviderBuilder AddRedisStreamsInstrumentation(this TracerProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddSource(RedisStreamsTelemetry.ActivitySourceName);
    }

    /// <summary>Collects the backplane's metrics (<see cref="RedisStreamsTelemetry.MeterName"/>).</summary>
    public static MeterProviderBuilder AddRedisStreamsInstrumentation(this MeterProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddMeter(RedisStreamsTelemetry.MeterName);
    }
}
