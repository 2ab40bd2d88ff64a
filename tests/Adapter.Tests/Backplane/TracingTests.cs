using System.Diagnostics;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Trace;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>One trace per packet: the producer span of the XADD and, on every node, a consumer span parented to it.</summary>
[Collection(nameof(TracingTests))] // the tracer provider listens process-wide: no other tracing test at the same time
public sealed class TracingTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    [Fact]
    public async Task A_send_from_one_node_is_one_trace_with_a_publish_and_a_receive_on_every_node()
    {
        var spans = new List<Activity>();
        await using var cluster = await TestCluster.StartAsync(redis.Server, 3, HubProtocolKind.Json, output);
        await using var far = await cluster.ConnectAsync(2);
        using var tracing = Sdk.CreateTracerProviderBuilder()
            .AddRedisStreamsInstrumentation()
            .AddInMemoryExporter(spans)
            .Build()!;
        var stream = cluster.StreamKey;

        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "traced");
        await far.WaitForTextAsync("traced");
        tracing.ForceFlush();

        var (producer, consumers) = await Spans.OneTraceOfAllSendAsync(spans, stream, nodes: 3);
        Assert.All(consumers, c =>
        {
            Assert.Equal("redis", c.GetTagItem("messaging.system"));
            Assert.Equal(stream, c.GetTagItem("messaging.destination.name"));
            Assert.Equal("process", c.GetTagItem("messaging.operation.type"));
            Assert.NotNull(c.GetTagItem("messaging.message.id"));
            Assert.Equal(typeof(TestHub).FullName, c.GetTagItem("signalr.hub"));
        });
        Assert.Equal("send", producer.GetTagItem("messaging.operation.type"));
        Assert.Equal(consumers[0].GetTagItem("messaging.message.id"), producer.GetTagItem("messaging.message.id"));
        // Probes on every node plus the far client: every node reached at least one connection.
        Assert.All(consumers, c => Assert.True((int)c.GetTagItem("signalr.redis_streams.connections_reached")! >= 1));
    }

    [Fact]
    public async Task A_hub_method_called_by_a_client_starts_the_trace()
    {
        var spans = new List<Activity>();
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output);
        await using var sender = await cluster.ConnectAsync(0);
        await using var member = await cluster.ConnectAsync(1);
        await member.Connection.InvokeAsync(nameof(TestHub.JoinGroup), "traced-room");
        using var tracing = Sdk.CreateTracerProviderBuilder()
            .AddSource("Microsoft.AspNetCore.SignalR.Server")
            .AddRedisStreamsInstrumentation()
            .AddInMemoryExporter(spans)
            .Build()!;

        var stream = cluster.StreamKey;
        await sender.Connection.InvokeAsync(nameof(TestHub.SendToGroup), "traced-room", "hello room");
        await member.WaitForTextAsync("hello room");
        tracing.ForceFlush();

        List<Activity> Snapshot() => Spans.Snapshot(spans);
        await Eventually.TrueAsync(() => Snapshot().Any(s => s.Kind == ActivityKind.Consumer && IsGroups(s, stream)
            && (int)s.GetTagItem("signalr.redis_streams.connections_reached")! == 1), "the member's node received the group packet");
        var snapshot = Snapshot();
        var producer = Assert.Single(snapshot, s => s.Kind == ActivityKind.Producer && IsGroups(s, stream));
        var hubSpan = Assert.Single(snapshot, s => s.SpanId == producer.ParentSpanId);
        Assert.Equal("Microsoft.AspNetCore.SignalR.Server", hubSpan.Source.Name);
        Assert.Contains(nameof(TestHub.SendToGroup), hubSpan.DisplayName, StringComparison.Ordinal);
        Assert.All(snapshot.Where(s => s.Kind == ActivityKind.Consumer && IsGroups(s, stream)),
            c => Assert.Equal(hubSpan.TraceId, c.TraceId));
    }

    [Fact]
    public async Task Retries_during_an_outage_and_the_republish_after_an_empty_restart_are_in_the_packets_trace()
    {
        var spans = new List<Activity>();
        await using var server = await RedisServer.StartAsync(persistent: false);
        await using var cluster = await TestCluster.StartAsync(server, 2, HubProtocolKind.Json, output);
        await using var far = await cluster.ConnectAsync(1);
        using var tracing = Sdk.CreateTracerProviderBuilder()
            .AddRedisStreamsInstrumentation()
            .AddInMemoryExporter(spans)
            .Build()!;
        // The sender's retries only: tests of other classes run at the same time in this process, some with outages.
        using var retries = new CounterTotal("signalr.redis_streams.publish_retries",
            cluster.Nodes[0].Services.GetRequiredService<BackplaneNode>().NodeId);
        var stream = cluster.StreamKey;

        // Published, then lost with Redis before anyone could be sure of it: republished after the empty restart.
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "before the crash");
        await far.WaitForTextAsync("before the crash");
        await server.KillAsync();
        // Sent while Redis is down: retried, then published once Redis is back.
        var during = cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "during the outage");
        await Eventually.TrueAsync(() => retries.Total > 0, "the send is being retried");
        await server.RestartAsync();
        await Eventually.WithinAsync(during, "the send completes after the restart", TimeSpan.FromSeconds(30));
        await far.WaitForTextAsync("during the outage");
        tracing.ForceFlush();

        List<Activity> Snapshot() => Spans.Snapshot(spans);
        bool Mine(Activity s) => (string?)s.GetTagItem("messaging.destination.name") == stream;
        await Eventually.TrueAsync(() => Snapshot().Any(s => Mine(s) && s.DisplayName.StartsWith("republish", StringComparison.Ordinal)),
            "a republish span after the empty restart");
        var snapshot = Snapshot().Where(Mine).ToList();
        var producers = snapshot.Where(s => s.DisplayName.StartsWith("publish", StringComparison.Ordinal) && (string?)s.GetTagItem("signalr.redis_streams.kind") == "All").ToList();

        var retried = Assert.Single(producers, p => p.Events.Any(e => e.Name == "publish.retry"));
        Assert.Equal(ActivityStatusCode.Unset, retried.Status);
        Assert.Contains(snapshot, c => c.Kind == ActivityKind.Consumer && c.TraceId == retried.TraceId && c.ParentSpanId == retried.SpanId);

        var republished = snapshot.Where(s => s.DisplayName.StartsWith("republish", StringComparison.Ordinal)).ToList();
        Assert.Contains(republished, r => producers.Any(p => p.TraceId == r.TraceId && p.SpanId == r.ParentSpanId && p != retried));
    }

    private static bool IsGroups(Activity span, string stream)
        => (string?)span.GetTagItem("signalr.redis_streams.kind") == "Groups" && (string?)span.GetTagItem("messaging.destination.name") == stream;
}
