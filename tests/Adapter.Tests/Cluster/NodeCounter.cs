using System.Diagnostics.Metrics;

namespace SignalR.RedisStreams.Tests.Cluster;

/// <summary>Sums a counter of the backplane's meter over the given nodes only (the meter of each node carries its id),
/// so that tests running at the same time in this process do not count.</summary>
internal sealed class NodeCounter : IDisposable
{
    private readonly MeterListener _listener = new();
    private long _total;

    public NodeCounter(string instrument, IReadOnlyCollection<string> nodes)
    {
        _listener.InstrumentPublished = (i, l) =>
        {
            if (i.Meter.Name == RedisStreamsTelemetry.MeterName && i.Name == instrument
                && i.Meter.Tags?.Any(t => t.Key == "signalr.redis_streams.node" && nodes.Contains(t.Value as string ?? "")) == true)
            {
                l.EnableMeasurementEvents(i);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _total, value));
        _listener.Start();
    }

    public long Total => Interlocked.Read(ref _total);

    public void Dispose() => _listener.Dispose();
}
