using AppHost;
using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using AppHost.Faults;
using AppHost.Tests.Chaos;
using AppHost.Tests.Infrastructure;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Google.Protobuf;
using Microsoft.AspNetCore.SignalR.Client;
using Xunit.Abstractions;

namespace AppHost.Tests;

/// <summary>
/// The real app with every project exporting OTLP/HTTP to an <see cref="OtlpTraceReceiver"/> inside the test
/// (started before the app, stopped after it), with short batch delays so spans arrive within a second; and with
/// connection-state recovery off (<c>Recovery:Enabled=false</c>), which tracing does not care about and the recovery-off
/// test of the same collection needs.
/// </summary>
public class TelemetryAppFixture : ChatAppFixture, IAsyncLifetime
{
    /// <inheritdoc />
    protected override IEnumerable<string> AppHostArgs() => [.. base.AppHostArgs(), $"{AppHostSettings.RecoveryKey}=false"];

    /// <summary>Where every project's spans end up.</summary>
    public OtlpTraceReceiver Receiver { get; } = new();

    /// <inheritdoc />
    protected override void ConfigureBuilder(IDistributedApplicationTestingBuilder builder)
    {
        base.ConfigureBuilder(builder); // removes OTEL_EXPORTER_OTLP_ENDPOINT; this callback runs after it and sets ours
        var endpoint = Receiver.Endpoint.GetLeftPart(UriPartial.Authority);
        foreach (var project in builder.Resources.OfType<ProjectResource>().ToList())
        {
            builder.CreateResourceBuilder(project).WithEnvironment(context =>
            {
                context.EnvironmentVariables["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint;
                context.EnvironmentVariables["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf";
                // Batch export delays (ms): spans reach the receiver ~0.2 s after they end.
                context.EnvironmentVariables["OTEL_BSP_SCHEDULE_DELAY"] = "200";
                context.EnvironmentVariables["OTEL_BLRP_SCHEDULE_DELAY"] = "200";
            });
        }
    }

    /// <summary>How long the app took to start and become healthy (for the test log).</summary>
    public TimeSpan StartupDuration { get; private set; }

    async Task IAsyncLifetime.InitializeAsync()
    {
        await Receiver.StartAsync(); // ConfigureBuilder needs its URL
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        await InitializeAsync();
        StartupDuration = System.Diagnostics.Stopwatch.GetElapsedTime(started);
    }

    async Task IAsyncLifetime.DisposeAsync()
    {
        try
        {
            await DisposeAsync(); // the app first: its exporters flush at shutdown into a live receiver
        }
        finally
        {
            await Receiver.DisposeAsync();
        }
    }
}

/// <summary>
/// End-to-end telemetry: a chat message is one trace, from the hub invocation on the sender's node through the
/// backplane's producer span to a consumer span on every node, as exported by the real processes over OTLP, and it
/// still is after Redis was restarted.
/// </summary>
[CollectionDefinition(Name)]
public sealed class TelemetryApp : ICollectionFixture<TelemetryAppFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "telemetry app";
}

[Collection(TelemetryApp.Name)]
public sealed class TelemetryTests(TelemetryAppFixture app, ITestOutputHelper output)
{
    private const string SignalRServerScope = "Microsoft.AspNetCore.SignalR.Server";
    private const string BackplaneScope = "SignalR.RedisStreams";
    private const string StreamName = "{signalr}";
    private const string ChatHubName = "ChatNode.Hubs.ChatHub";

    private static readonly TimeSpan DeliveryTimeout = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan RestartTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan SpansTimeout = TimeSpan.FromSeconds(15);

    /// <summary>Clock slack when matching a hub span's timestamps to the test's send window (same machine clock).</summary>
    private static readonly TimeSpan ClockSlack = TimeSpan.FromMilliseconds(100);

    [Fact]
    public async Task A_message_is_one_trace_from_the_hub_call_to_a_receive_on_every_node_before_and_after_a_Redis_restart()
    {
        output.WriteLine($"App started and healthy in {app.StartupDuration.TotalSeconds:0.0} s");
        var nodes = app.NodeNames;
        Assert.Equal(3, nodes.Count);
        var sender = nodes[0];
        await using var alice = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, nodes[0], "alice");
        await using var bob = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, nodes[1], "bob");
        await using var carol = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, nodes[2], "carol");
        Inbox[] inboxes = [new(alice, nodes[0]), new(bob, nodes[1]), new(carol, nodes[2])];
        try
        {
            var m1 = await SendAndWaitForDeliveryAsync(alice, "m1", inboxes);

            await RestartRedisAsync();
            Assert.All(new[] { alice, bob, carol }, c => Assert.Equal(HubConnectionState.Connected, c.State));

            var m2 = await SendAndWaitForDeliveryAsync(alice, "m2", inboxes);

            AssertOnePacketTrace(await WaitForPacketTraceAsync(m1, sender), sender, nodes);
            AssertOnePacketTrace(await WaitForPacketTraceAsync(m2, sender), sender, nodes);
        }
        finally
        {
            foreach (var inbox in inboxes)
            {
                inbox.Dispose();
            }
        }

        output.WriteLine("Resources seen: " + string.Join(", ", app.Receiver.Spans
            .Select(s => s.ServiceName + " (service.instance.id " + (s.ResourceAttributes.GetValueOrDefault("service.instance.id") ?? "-") + ")")
            .Distinct().Order()));
        output.WriteLine($"{app.Receiver.Spans.Count} spans in {app.Receiver.TraceRequests} OTLP requests");
    }

    [Fact]
    public async Task The_receiver_decodes_a_gzip_compressed_OTLP_request_and_accepts_metrics_and_logs()
    {
        // A hand-encoded ExportTraceServiceRequest: the resource after its scope spans, an unknown field in the span.
        var traceId = Convert.FromHexString("0102030405060708090a0b0c0d0e0f10");
        var span = Encode(o =>
        {
            WriteBytes(o, 1, traceId);
            WriteBytes(o, 2, Convert.FromHexString("1112131415161718"));
            WriteBytes(o, 4, Convert.FromHexString("2122232425262728"));
            WriteString(o, 5, "publish selftest");
            o.WriteTag(6, WireFormat.WireType.Varint);
            o.WriteEnum((int)OtlpSpanKind.Producer);
            o.WriteTag(7, WireFormat.WireType.Fixed64);
            o.WriteFixed64(1_700_000_000_123_456_789UL);
            WriteBytes(o, 9, KeyValue("text", v => WriteString(v, 1, "hello")));
            WriteBytes(o, 9, KeyValue("count", v => { v.WriteTag(3, WireFormat.WireType.Varint); v.WriteInt64(-42); }));
            WriteBytes(o, 9, KeyValue("flag", v => { v.WriteTag(2, WireFormat.WireType.Varint); v.WriteBool(true); }));
            WriteBytes(o, 11, Encode(e => WriteString(e, 2, "publish.retry")));
            o.WriteTag(99, WireFormat.WireType.Varint);
            o.WriteUInt64(7);
        });
        var scopeSpans = Encode(o =>
        {
            WriteBytes(o, 1, Encode(scope => WriteString(scope, 1, "selftest.scope")));
            WriteBytes(o, 2, span);
        });
        var resource = Encode(o => WriteBytes(o, 1, KeyValue("service.name", v => WriteString(v, 1, "receiver-selftest"))));
        var request = Encode(o => WriteBytes(o, 1, Encode(rs =>
        {
            WriteBytes(rs, 2, scopeSpans);
            WriteBytes(rs, 1, resource);
        })));

        using var http = new HttpClient { BaseAddress = app.Receiver.Endpoint, Timeout = TimeSpan.FromSeconds(10) };
        using var compressed = new MemoryStream();
        await using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
        {
            await gzip.WriteAsync(request);
        }

        using var traces = new ByteArrayContent(compressed.ToArray());
        traces.Headers.ContentType = new MediaTypeHeaderValue("application/x-protobuf");
        traces.Headers.ContentEncoding.Add("gzip");
        using var response = await http.PostAsync(new Uri("/v1/traces", UriKind.Relative), traces);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Empty(await response.Content.ReadAsByteArrayAsync()); // an empty ExportTraceServiceResponse

        var decoded = Assert.Single(app.Receiver.Spans, s => s.ServiceName == "receiver-selftest");
        Assert.Equal("selftest.scope", decoded.ScopeName);
        Assert.Equal("0102030405060708090a0b0c0d0e0f10", decoded.TraceId);
        Assert.Equal("1112131415161718", decoded.SpanId);
        Assert.Equal("2122232425262728", decoded.ParentSpanId);
        Assert.Equal("publish selftest", decoded.Name);
        Assert.Equal(OtlpSpanKind.Producer, decoded.Kind);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_123).AddTicks(4567), decoded.Start);
        Assert.Equal("hello", decoded.Attribute("text"));
        Assert.Equal(-42L, decoded.Attributes["count"]);
        Assert.Equal(true, decoded.Attributes["flag"]);
        Assert.Equal(["publish.retry"], decoded.EventNames);

        foreach (var path in new[] { "/v1/metrics", "/v1/logs" })
        {
            using var ignored = new ByteArrayContent([0x0a, 0x00]);
            ignored.Headers.ContentType = new MediaTypeHeaderValue("application/x-protobuf");
            using var accepted = await http.PostAsync(new Uri(path, UriKind.Relative), ignored);
            Assert.Equal(HttpStatusCode.OK, accepted.StatusCode);
        }
    }

    private static byte[] Encode(Action<CodedOutputStream> write)
    {
        using var buffer = new MemoryStream();
        using (var output = new CodedOutputStream(buffer, leaveOpen: true))
        {
            write(output);
        }

        return buffer.ToArray();
    }

    private static void WriteBytes(CodedOutputStream output, int field, byte[] value)
    {
        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(value));
    }

    private static void WriteString(CodedOutputStream output, int field, string value)
    {
        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
        output.WriteString(value);
    }

    // KeyValue { string key = 1; AnyValue value = 2; }
    private static byte[] KeyValue(string key, Action<CodedOutputStream> writeAnyValue) => Encode(o =>
    {
        WriteString(o, 1, key);
        WriteBytes(o, 2, Encode(writeAnyValue));
    });

    /// <summary>What the test knows about one sent message: its text and when the Send invocation ran.</summary>
    private sealed record SentMessage(string Text, DateTimeOffset InvokedAt, DateTimeOffset ReturnedAt);

    /// <summary>The spans of one message's trace.</summary>
    private sealed record PacketTrace(SentMessage Message, ReceivedSpan HubSpan, IReadOnlyList<ReceivedSpan> Spans);

    private async Task<SentMessage> SendAndWaitForDeliveryAsync(HubConnection sender, string text, IEnumerable<Inbox> inboxes)
    {
        var invokedAt = DateTimeOffset.UtcNow;
        await sender.InvokeAsync("Send", text).WaitAsync(DeliveryTimeout);
        var returnedAt = DateTimeOffset.UtcNow;
        foreach (var inbox in inboxes)
        {
            await Eventually.WithinAsync(inbox.WaitForAsync(text), DeliveryTimeout, $"the client on {inbox.Node} to receive '{text}'");
        }

        output.WriteLine($"'{text}' delivered to every node ({(DateTimeOffset.UtcNow - invokedAt).TotalMilliseconds:0} ms)");
        return new SentMessage(text, invokedAt, returnedAt);
    }

    /// <summary>Stops Redis through the orchestrator, starts it again, and waits until Redis and every node are healthy.</summary>
    private async Task RestartRedisAsync()
    {
        const string redis = AppFaults.Redis;
        var started = DateTimeOffset.UtcNow;
        using var deadline = new CancellationTokenSource(RestartTimeout);
        var oldPid = await ResourceProcess.ReportedProcessIdAsync(app.App.ResourceNotifications, redis, deadline.Token);

        await AppFaults.StopAndStartAsync(app.App, redis, deadline.Token);
        var newPid = await ResourceProcess.ReportedProcessIdAsync(app.App.ResourceNotifications, redis, deadline.Token);
        Assert.NotEqual(oldPid, newPid);

        // The orchestrator's health snapshot of a node may still be the one from before the restart: ask each node's
        // /health (which includes its Redis connection's check) directly until it answers 200.
        await app.WaitUntilHealthyAsync(app.NodeNames, deadline.Token);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        foreach (var node in app.NodeNames)
        {
            var health = new Uri(app.App.GetEndpoint(node, "http"), "/health");
            await Eventually.TrueAsync(
                async () =>
                {
                    using var response = await http.GetAsync(health, deadline.Token);
                    return response.StatusCode == HttpStatusCode.OK;
                },
                RestartTimeout - (DateTimeOffset.UtcNow - started),
                node + " /health to answer 200 after the Redis restart");
        }

        output.WriteLine($"Redis restarted (pid {oldPid} -> {newPid}), nodes healthy after {(DateTimeOffset.UtcNow - started).TotalMilliseconds:0} ms");
    }

    /// <summary>
    /// Waits until the receiver holds the message's trace: the Send hub invocation on <paramref name="senderNode"/>
    /// that ran inside the message's send window, a producer span under it, and consumer spans under that from
    /// three services.
    /// </summary>
    private async Task<PacketTrace> WaitForPacketTraceAsync(SentMessage message, string senderNode)
    {
        PacketTrace? trace = null;
        try
        {
            await Eventually.TrueAsync(
                () =>
                {
                    trace = TryFindPacketTrace(message, senderNode);
                    return Task.FromResult(trace is not null);
                },
                SpansTimeout,
                $"the spans of '{message.Text}'");
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException(ex.Message + "\nSpans received (excluding HTTP):\n" + DescribeSpans(app.Receiver.Spans), ex);
        }

        return trace!;
    }

    private PacketTrace? TryFindPacketTrace(SentMessage message, string senderNode)
    {
        var spans = app.Receiver.Spans;
        var hubSpans = spans.Where(s =>
            s.ServiceName == senderNode
            && s.ScopeName == SignalRServerScope
            && s.Attribute("rpc.method") == "Send"
            && s.Start >= message.InvokedAt - ClockSlack
            && s.Start <= message.ReturnedAt + ClockSlack).ToList();
        if (hubSpans.Count != 1)
        {
            return null;
        }

        var hubSpan = hubSpans[0];
        var inTrace = spans.Where(s => s.TraceId == hubSpan.TraceId).ToList();
        var producer = inTrace.FirstOrDefault(s => s.Name == "publish " + StreamName && s.ParentSpanId == hubSpan.SpanId);
        if (producer is null)
        {
            return null;
        }

        var consumerServices = inTrace.Where(s => s.Name == "receive " + StreamName && s.ParentSpanId == producer.SpanId)
            .Select(s => s.ServiceName).Distinct().Count();
        return consumerServices >= app.NodeCount ? new PacketTrace(message, hubSpan, inTrace) : null;
    }

    private void AssertOnePacketTrace(PacketTrace trace, string senderNode, IReadOnlyList<string> nodes)
    {
        output.WriteLine($"'{trace.Message.Text}': trace {trace.HubSpan.TraceId}\n{DescribeSpans(trace.Spans)}");

        // The hub invocation: SignalR's own span on the sender's node, the root of the message's trace.
        var hub = trace.HubSpan;
        Assert.Equal(senderNode, hub.ServiceName);
        Assert.Equal(OtlpSpanKind.Server, hub.Kind);
        Assert.Equal("signalr", hub.Attribute("rpc.system"));
        Assert.Equal(ChatHubName + "/Send", hub.Name);

        // One producer span around the XADD, a child of the hub invocation.
        var producer = Assert.Single(trace.Spans, s => s.Name == "publish " + StreamName);
        Assert.Equal(senderNode, producer.ServiceName);
        Assert.Equal(BackplaneScope, producer.ScopeName);
        Assert.Equal(OtlpSpanKind.Producer, producer.Kind);
        Assert.Equal(hub.SpanId, producer.ParentSpanId);
        Assert.Equal("redis", producer.Attribute("messaging.system"));
        Assert.Equal(StreamName, producer.Attribute("messaging.destination.name"));
        Assert.Equal("send", producer.Attribute("messaging.operation.type"));
        Assert.Equal(ChatHubName, producer.Attribute("signalr.hub"));
        Assert.Equal("All", producer.Attribute("signalr.redis_streams.kind"));
        var entryId = producer.Attribute("messaging.message.id");
        Assert.False(string.IsNullOrEmpty(entryId), "the producer span names the stream entry id");

        // Exactly one consumer span per node, each a child of the producer, each for the same stream entry, each
        // having delivered to the one client connected to that node.
        var consumers = trace.Spans.Where(s => s.Name == "receive " + StreamName).ToList();
        Assert.Equal(nodes.Order(), consumers.Select(c => c.ServiceName).Order());
        Assert.All(consumers, c =>
        {
            Assert.Equal(BackplaneScope, c.ScopeName);
            Assert.Equal(OtlpSpanKind.Consumer, c.Kind);
            Assert.Equal(producer.SpanId, c.ParentSpanId);
            Assert.Equal("redis", c.Attribute("messaging.system"));
            Assert.Equal(StreamName, c.Attribute("messaging.destination.name"));
            Assert.Equal("process", c.Attribute("messaging.operation.type"));
            Assert.Equal(entryId, c.Attribute("messaging.message.id"));
            Assert.Equal(ChatHubName, c.Attribute("signalr.hub"));
            Assert.Equal("All", c.Attribute("signalr.redis_streams.kind"));
            Assert.Equal("1", c.Attribute("signalr.redis_streams.connections_reached"));
        });

        // Three backplane node ids, and the sender's own consumer span carries the producer's node id.
        Assert.Equal(nodes.Count, consumers.Select(c => c.Attribute("signalr.redis_streams.node")).Distinct().Count());
        Assert.Equal(producer.Attribute("signalr.redis_streams.node"), consumers.Single(c => c.ServiceName == senderNode).Attribute("signalr.redis_streams.node"));

        // Nothing else of the backplane in this trace (no republish: Redis kept its data over the restart).
        Assert.DoesNotContain(trace.Spans, s => s.ScopeName == BackplaneScope && s != producer && !consumers.Contains(s));
    }

    /// <summary>Spans other than plain HTTP ones, grouped by trace, one line each (for failure messages and the log).</summary>
    private static string DescribeSpans(IEnumerable<ReceivedSpan> spans)
    {
        var text = new StringBuilder();
        foreach (var trace in spans.Where(s => s.ScopeName is SignalRServerScope or BackplaneScope).GroupBy(s => s.TraceId))
        {
            text.Append("  trace ").AppendLine(trace.Key);
            foreach (var span in trace.OrderBy(s => s.Start))
            {
                text.Append(CultureInfo.InvariantCulture,
                    $"    {span.Start:HH:mm:ss.fff} {span.ServiceName,-11} {span.Kind,-8} {span.Name,-28} span {span.SpanId} parent {span.ParentSpanId ?? "-",-16}");
                text.Append(" id=").Append(span.Attribute("messaging.message.id") ?? "-");
                text.Append(" reached=").Append(span.Attribute("signalr.redis_streams.connections_reached") ?? "-");
                if (span.EventNames.Count > 0)
                {
                    text.Append(" events=").Append(string.Join(',', span.EventNames));
                }

                text.AppendLine();
            }
        }

        return text.ToString();
    }

    /// <summary>The <c>message</c> events one client received, by text.</summary>
    private sealed class Inbox : IDisposable
    {
        private readonly ConcurrentDictionary<string, TaskCompletionSource<ChatMessageDto>> _byText = new();
        private readonly IDisposable _subscription;

        public Inbox(HubConnection connection, string node)
        {
            Node = node;
            _subscription = connection.On<ChatMessageDto>("message", message => Slot(message.Text).TrySetResult(message));
        }

        public string Node { get; }

        public Task<ChatMessageDto> WaitForAsync(string text) => Slot(text).Task;

        public void Dispose() => _subscription.Dispose();

        private TaskCompletionSource<ChatMessageDto> Slot(string text) =>
            _byText.GetOrAdd(text, _ => new TaskCompletionSource<ChatMessageDto>(TaskCreationOptions.RunContinuationsAsynchronously));
    }
}
