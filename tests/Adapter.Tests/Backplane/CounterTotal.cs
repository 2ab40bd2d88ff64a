using System.Diagnostics.Metrics;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>Sums a counter of the backplane's meter while it is alive: across the given nodes (by node id), or across
/// all nodes in this process when none is given (then other tests running at the same time count too).</summary>
internal sealed class CounterTotal : IDisposable
{
    private readonly MeterListener _listener = new();
    private long _total;

    public CounterTotal(string instrument, params string[] nodes)
    {
        _listener.InstrumentPublished = (i, l) =>
        {
            if (i.Meter.Name == RedisStreamsTelemetry.MeterName && i.Name == instrument
                && (nodes.Length == 0 || (i.Meter.Tags ?? []).Any(t => t.Key == "signalr.redis_streams.node" && nodes.Contains(t.Value as string))))
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
