using System.Diagnostics.Metrics;
using SignalR.RedisStreams;

namespace Benchmarks.Infrastructure;

/// <summary>What our backplane's nodes of one cluster count on their meters, summed while the cluster lives: the XREADs
/// they sent, their writes to connections and the messages those carried. Each node's instruments come from its host's
/// <see cref="IMeterFactory"/>, which is how they are told apart from other clusters' in the same process.</summary>
internal sealed class AdapterCounters : IDisposable
{
    private const string Reads = "signalr.redis_streams.reads";
    private const string Writes = "signalr.redis_streams.connection_writes";
    private const string Dispatched = "signalr.redis_streams.dispatched";

    private readonly MeterListener _listener = new();
    private readonly long[] _totals = new long[3];

    public AdapterCounters(IEnumerable<IMeterFactory> nodes)
    {
        var factories = nodes.ToHashSet();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == RedisStreamsTelemetry.MeterName && instrument.Meter.Scope is IMeterFactory factory && factories.Contains(factory)
                && Array.IndexOf([Reads, Writes, Dispatched], instrument.Name) is var slot and >= 0)
            {
                listener.EnableMeasurementEvents(instrument, slot);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, value, _, slot) => Interlocked.Add(ref _totals[(int)slot!], value));
        _listener.Start();
    }

    /// <summary>The totals so far; a run's figures are the difference of two.</summary>
    public (long Reads, long Writes, long Dispatched) Snapshot()
        => (Interlocked.Read(ref _totals[0]), Interlocked.Read(ref _totals[1]), Interlocked.Read(ref _totals[2]));

    public void Dispose() => _listener.Dispose();
}
