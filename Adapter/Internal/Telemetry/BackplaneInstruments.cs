using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace SignalR.RedisStreams.Internal;

/// <summary>The ActivitySource (one per process) and the Meter's instruments (one set per node, from the host's
/// <see cref="IMeterFactory"/>, each measurement tagged with the node id).</summary>
internal sealed class BackplaneInstruments
{
    public static readonly ActivitySource Source = new(RedisStreamsTelemetry.ActivitySourceName);

    public BackplaneInstruments(IMeterFactory meterFactory, string nodeId, Func<int> outboxDepth, Func<int> liveNodes, Func<long> packetsBehind)
    {
        Meter = meterFactory.Create(new MeterOptions(RedisStreamsTelemetry.MeterName)
        {
            Tags = [new KeyValuePair<string, object?>("signalr.redis_streams.node", nodeId)],
        });
        Published = Meter.CreateCounter<long>("signalr.redis_streams.published", "{entry}", "Entries appended to the stream by this node.");
        Received = Meter.CreateCounter<long>("signalr.redis_streams.received", "{entry}", "Entries read from the stream by this node.");
        Dispatched = Meter.CreateCounter<long>("signalr.redis_streams.dispatched", "{message}", "Messages written to local connections.");
        Duplicates = Meter.CreateCounter<long>("signalr.redis_streams.duplicates_dropped", "{entry}", "Entries dropped because they were already processed (same sender and sequence).");
        Gaps = Meter.CreateCounter<long>("signalr.redis_streams.gap_entries", "{entry}", "Entries known to be missing (sequence gaps: trimming, or Redis lost data).");
        Malformed = Meter.CreateCounter<long>("signalr.redis_streams.malformed", "{entry}", "Entries skipped as malformed or of an unknown version.");
        Forged = Meter.CreateCounter<long>("signalr.redis_streams.forged", "{entry}", "Entries skipped because Redis never gave their sender that sequence number (written to the stream by something other than the backplane).");
        UnknownHub = Meter.CreateCounter<long>("signalr.redis_streams.unknown_hub", "{entry}", "Entries skipped because they are for a hub this node does not serve.");
        PublishRetries = Meter.CreateCounter<long>("signalr.redis_streams.publish_retries", "{attempt}", "Publish attempts that failed and were retried.");
        PublishFailures = Meter.CreateCounter<long>("signalr.redis_streams.publish_failures", "{entry}", "Sends that failed (outbox timeout or shutdown) and were not published.");
        ReadErrors = Meter.CreateCounter<long>("signalr.redis_streams.read_errors", "{error}", "Failed XREADs (retried).");
        Reads = Meter.CreateCounter<long>("signalr.redis_streams.reads", "{read}", "XREADs of this node's streams that Redis answered, with BLOCK (a wait) or without, with entries or none.");
        ConnectionWrites = Meter.CreateCounter<long>("signalr.redis_streams.connection_writes", "{write}", "Writes of what the node read to its connections; a write carries one message or several merged (dispatched / connection_writes = messages per write).");
        Restarts = Meter.CreateCounter<long>("signalr.redis_streams.redis_restarts_detected", "{restart}", "Times Redis was found restarted without its data.");
        Recovered = Meter.CreateCounter<long>("signalr.redis_streams.recovery.recovered", "{connection}", "Connections that recovered a session (connection-state recovery).");
        NotRecovered = Meter.CreateCounter<long>("signalr.redis_streams.recovery.not_recovered", "{connection}", "Connections that asked to recover a session and were told they were not recovered.");
        Replayed = Meter.CreateCounter<long>("signalr.redis_streams.recovery.replayed", "{message}", "Missed messages replayed to recovered connections.");
        PublishDuration = Meter.CreateHistogram<double>("signalr.redis_streams.publish.duration", "ms", "From send to the entry being in the stream, including outbox waiting.");
        ReadLag = Meter.CreateHistogram<double>("signalr.redis_streams.read_lag", "ms", "Age of an entry (its stream id's time) when this node processed it.");
        Meter.CreateObservableGauge("signalr.redis_streams.outbox.depth", outboxDepth, "{entry}", "Sends waiting to be published.");
        Meter.CreateObservableGauge("signalr.redis_streams.nodes.live", liveNodes, "{node}", "Nodes heard from within the heartbeat timeout, this one included.");
        Meter.CreateObservableGauge("signalr.redis_streams.read_lag.packets", packetsBehind, "{packet}", "Packets appended to the shared stream and this node's inbox that it has not read yet (sampled at each heartbeat).");
    }

    public Meter Meter { get; }

    public Counter<long> Published { get; }
    public Counter<long> Received { get; }
    public Counter<long> Dispatched { get; }
    public Counter<long> Duplicates { get; }
    public Counter<long> Gaps { get; }
    public Counter<long> Malformed { get; }
    public Counter<long> Forged { get; }
    public Counter<long> UnknownHub { get; }
    public Counter<long> PublishRetries { get; }
    public Counter<long> PublishFailures { get; }
    public Counter<long> ReadErrors { get; }
    public Counter<long> Reads { get; }
    public Counter<long> ConnectionWrites { get; }
    public Counter<long> Restarts { get; }
    public Counter<long> Recovered { get; }
    public Counter<long> NotRecovered { get; }
    public Counter<long> Replayed { get; }
    public Histogram<double> PublishDuration { get; }
    public Histogram<double> ReadLag { get; }
}
