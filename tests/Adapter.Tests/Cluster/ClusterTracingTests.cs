using System.Diagnostics;
using Microsoft.AspNetCore.SignalR;
using OpenTelemetry;
using OpenTelemetry.Trace;
using SignalR.RedisStreams.Tests.Backplane;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Cluster;

/// <summary>On a Redis Cluster with three streams, still one trace per packet: the producer span of the append on the
/// sender's stream and, on every node (each reading that stream with its own reader), a consumer span parented to it.</summary>
[Collection(nameof(TracingTests))] // the tracer provider listens process-wide: no other tracing test at the same time
public sealed class ClusterTracingTests(RedisClusterFixture redis, ITestOutputHelper output) : IClassFixture<RedisClusterFixture>
{
    [Fact]
    public async Task On_three_streams_a_send_is_one_trace_with_a_publish_and_a_receive_on_every_node()
    {
        var spans = new List<Activity>();
        await using var cluster = await ClusterNodes.StartAsync(redis.Cluster, 3, HubProtocolKind.Json, output);
        await using var far = await cluster.ConnectAsync(2);
        using var tracing = Sdk.CreateTracerProviderBuilder()
            .AddRedisStreamsInstrumentation()
            .AddInMemoryExporter(spans)
            .Build()!;
        var sender = cluster.Backplane(1);
        var stream = sender.ShardKeys[sender.SendShard].StreamName;

        await cluster.Hub(1).Clients.All.SendAsync(TestClient.SendMethod, "traced on a cluster");
        await far.WaitForTextAsync("traced on a cluster");
        tracing.ForceFlush();

        var (producer, consumers) = await Spans.OneTraceOfAllSendAsync(spans, stream, nodes: 3);
        Assert.All(consumers, c => Assert.Equal("receive " + stream, c.DisplayName));
        Assert.Equal("publish " + stream, producer.DisplayName);
    }
}
