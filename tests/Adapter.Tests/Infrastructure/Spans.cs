using System.Diagnostics;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>Reading the spans an in-memory exporter collects (it adds to its list from other threads, under the list's
/// lock).</summary>
internal static class Spans
{
    /// <summary>A copy of the spans collected so far.</summary>
    public static List<Activity> Snapshot(List<Activity> spans)
    {
        lock (spans)
        {
            return [.. spans];
        }
    }

    /// <summary>Waits until <paramref name="nodes"/> nodes received the one <c>All</c> packet sent on
    /// <paramref name="stream"/>, then checks that its spans are one trace: a single producer span, and one consumer
    /// span per node, each on a different node and parented to the producer.</summary>
    public static async Task<(Activity Producer, List<Activity> Consumers)> OneTraceOfAllSendAsync(List<Activity> spans, string stream, int nodes)
    {
        bool Mine(Activity s) => (string?)s.GetTagItem("messaging.destination.name") == stream && (string?)s.GetTagItem("signalr.redis_streams.kind") == "All";
        await Eventually.TrueAsync(() => Snapshot(spans).Count(s => s.Kind == ActivityKind.Consumer && Mine(s)) >= nodes, "a consumer span per node");

        var all = Snapshot(spans).Where(Mine).ToList();
        var producer = Assert.Single(all, s => s.Kind == ActivityKind.Producer);
        var consumers = all.Where(s => s.Kind == ActivityKind.Consumer).ToList();
        Assert.Equal(nodes, consumers.Count);
        Assert.All(consumers, c =>
        {
            Assert.Equal(producer.TraceId, c.TraceId);
            Assert.Equal(producer.SpanId, c.ParentSpanId);
        });
        Assert.Equal(nodes, consumers.Select(c => c.GetTagItem("signalr.redis_streams.node")).Distinct().Count());
        return (producer, consumers);
    }
}
