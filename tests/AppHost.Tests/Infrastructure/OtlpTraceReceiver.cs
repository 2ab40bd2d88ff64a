using System.Collections.Concurrent;
using System.IO.Compression;
using System.Net;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace AppHost.Tests.Infrastructure;

/// <summary>OTLP <c>Span.SpanKind</c> (opentelemetry/proto/trace/v1/trace.proto).</summary>
public enum OtlpSpanKind
{
    /// <summary>SPAN_KIND_UNSPECIFIED = 0.</summary>
    Unspecified = 0,

    /// <summary>SPAN_KIND_INTERNAL = 1.</summary>
    Internal = 1,

    /// <summary>SPAN_KIND_SERVER = 2.</summary>
    Server = 2,

    /// <summary>SPAN_KIND_CLIENT = 3.</summary>
    Client = 3,

    /// <summary>SPAN_KIND_PRODUCER = 4.</summary>
    Producer = 4,

    /// <summary>SPAN_KIND_CONSUMER = 5.</summary>
    Consumer = 5,
}

/// <summary>
/// One span as an OTLP exporter sent it. Ids are lower-case hex (as in <c>traceparent</c> and the dashboard's URLs);
/// <see cref="ParentSpanId"/> is null for a root span. Attribute values are <see cref="string"/>, <see cref="long"/>,
/// <see cref="bool"/> or <see cref="double"/> (arrays, maps and bytes are left out).
/// </summary>
public sealed record ReceivedSpan(
    string ServiceName,
    IReadOnlyDictionary<string, object> ResourceAttributes,
    string ScopeName,
    string TraceId,
    string SpanId,
    string? ParentSpanId,
    string Name,
    OtlpSpanKind Kind,
    DateTimeOffset Start,
    DateTimeOffset End,
    IReadOnlyDictionary<string, object> Attributes,
    IReadOnlyList<string> EventNames,
    IReadOnlyList<(string TraceId, string SpanId)> Links)
{
    /// <summary>The attribute <paramref name="key"/> as a string (integers in invariant culture), or null.</summary>
    public string? Attribute(string key) => Attributes.TryGetValue(key, out var value)
        ? Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)
        : null;
}

/// <summary>
/// A minimal OTLP/HTTP receiver for tests: Kestrel on 127.0.0.1 (a free port), <c>POST /v1/traces</c> with an
/// <c>application/x-protobuf</c> <c>ExportTraceServiceRequest</c> (optionally gzip-compressed), decoded with
/// <see cref="CodedInputStream"/> by the field numbers of opentelemetry-proto (OpenTelemetry.Proto is not available
/// as a package). Spans are kept in memory, thread-safely. <c>/v1/metrics</c> and <c>/v1/logs</c> are accepted and
/// ignored, so the exporters of a project pointed here never retry or log failures.
/// </summary>
/// <remarks>
/// Point a process at it with <c>OTEL_EXPORTER_OTLP_ENDPOINT=</c><see cref="Endpoint"/> and
/// <c>OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf</c> (the exporter appends <c>/v1/traces</c> itself).
/// </remarks>
public sealed class OtlpTraceReceiver : IAsyncDisposable
{
    private const string ProtobufContentType = "application/x-protobuf";

    private readonly ConcurrentQueue<ReceivedSpan> _spans = new();
    private WebApplication? _server;
    private int _traceRequests;
    private int _rejectedRequests;

    /// <summary>The base URL exporters send to, e.g. <c>http://127.0.0.1:41234</c> (known after <see cref="StartAsync"/>).</summary>
    public Uri Endpoint { get; private set; } = null!;

    /// <summary>Every span received so far, in arrival order (a snapshot).</summary>
    public IReadOnlyList<ReceivedSpan> Spans => [.. _spans];

    /// <summary>Number of <c>/v1/traces</c> requests decoded.</summary>
    public int TraceRequests => Volatile.Read(ref _traceRequests);

    /// <summary>Number of <c>/v1/traces</c> requests that could not be decoded (answered 400).</summary>
    public int RejectedRequests => Volatile.Read(ref _rejectedRequests);

    /// <summary>Starts listening on 127.0.0.1 on a port the OS picks.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_server is not null)
        {
            throw new InvalidOperationException("The receiver is already started.");
        }

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0);
            kestrel.Limits.MaxRequestBodySize = 64 * 1024 * 1024;
        });

        var server = builder.Build();
        server.MapPost("/v1/traces", ReceiveTracesAsync);
        server.MapPost("/v1/metrics", AcceptAndIgnoreAsync);
        server.MapPost("/v1/logs", AcceptAndIgnoreAsync);

        await server.StartAsync(cancellationToken);
        _server = server;
        var addresses = server.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()
            ?? throw new InvalidOperationException("Kestrel reports no addresses.");
        var address = addresses.Addresses.Single();
        Endpoint = new Uri(address);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.StopAsync();
            await _server.DisposeAsync();
            _server = null;
        }
    }

    private async Task ReceiveTracesAsync(HttpContext context)
    {
        byte[] body;
        try
        {
            body = await ReadBodyAsync(context.Request);
            foreach (var span in OtlpTraceDecoder.DecodeExportTraceServiceRequest(body))
            {
                _spans.Enqueue(span);
            }
        }
        catch (Exception ex) when (ex is InvalidProtocolBufferException or InvalidDataException)
        {
            Interlocked.Increment(ref _rejectedRequests);
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return;
        }

        Interlocked.Increment(ref _traceRequests);
        await WriteEmptyResponseAsync(context.Response);
    }

    private static async Task AcceptAndIgnoreAsync(HttpContext context)
    {
        await context.Request.Body.CopyToAsync(Stream.Null, context.RequestAborted);
        await WriteEmptyResponseAsync(context.Response);
    }

    /// <summary>An empty Export*ServiceResponse (no partial_success): zero bytes of protobuf.</summary>
    private static Task WriteEmptyResponseAsync(HttpResponse response)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = ProtobufContentType;
        response.ContentLength = 0;
        return Task.CompletedTask;
    }

    private static async Task<byte[]> ReadBodyAsync(HttpRequest request)
    {
        var encoding = request.Headers.ContentEncoding.ToString();
        using var buffer = new MemoryStream();
        if (encoding.Equals("gzip", StringComparison.OrdinalIgnoreCase))
        {
            await using var gzip = new GZipStream(request.Body, CompressionMode.Decompress, leaveOpen: true);
            await gzip.CopyToAsync(buffer, request.HttpContext.RequestAborted);
        }
        else if (encoding.Length == 0 || encoding.Equals("identity", StringComparison.OrdinalIgnoreCase))
        {
            await request.Body.CopyToAsync(buffer, request.HttpContext.RequestAborted);
        }
        else
        {
            throw new InvalidDataException($"Unsupported Content-Encoding '{encoding}'.");
        }

        return buffer.ToArray();
    }
}

/// <summary>
/// Decodes OTLP trace messages field by field. Field numbers are those of opentelemetry-proto
/// (opentelemetry/proto/collector/trace/v1/trace_service.proto, trace/v1/trace.proto, resource/v1/resource.proto,
/// common/v1/common.proto); unknown fields are skipped, as protobuf requires.
/// </summary>
public static class OtlpTraceDecoder
{
    /// <summary>Decodes an <c>ExportTraceServiceRequest</c> into flat spans.</summary>
    public static IReadOnlyList<ReceivedSpan> DecodeExportTraceServiceRequest(byte[] message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var spans = new List<ReceivedSpan>();
        // ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
        var input = new CodedInputStream(message);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (IsLengthDelimited(tag, 1))
            {
                DecodeResourceSpans(input.ReadBytes(), spans);
            }
            else
            {
                input.SkipLastField();
            }
        }

        return spans;
    }

    // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
    private static void DecodeResourceSpans(ByteString message, List<ReceivedSpan> spans)
    {
        var resourceAttributes = new Dictionary<string, object>();
        var scopeSpans = new List<ByteString>();
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (IsLengthDelimited(tag, 1))
            {
                DecodeResource(input.ReadBytes(), resourceAttributes);
            }
            else if (IsLengthDelimited(tag, 2))
            {
                // The resource may come after its scope spans on the wire: decode those once it is known.
                scopeSpans.Add(input.ReadBytes());
            }
            else
            {
                input.SkipLastField();
            }
        }

        var serviceName = resourceAttributes.TryGetValue("service.name", out var name) ? name.ToString()! : "";
        foreach (var scope in scopeSpans)
        {
            DecodeScopeSpans(scope, serviceName, resourceAttributes, spans);
        }
    }

    // Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
    private static void DecodeResource(ByteString message, Dictionary<string, object> attributes)
    {
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (IsLengthDelimited(tag, 1))
            {
                AddKeyValue(input.ReadBytes(), attributes);
            }
            else
            {
                input.SkipLastField();
            }
        }
    }

    // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
    private static void DecodeScopeSpans(ByteString message, string serviceName, IReadOnlyDictionary<string, object> resourceAttributes, List<ReceivedSpan> spans)
    {
        var scopeName = "";
        var spanMessages = new List<ByteString>();
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (IsLengthDelimited(tag, 1))
            {
                scopeName = DecodeScopeName(input.ReadBytes());
            }
            else if (IsLengthDelimited(tag, 2))
            {
                spanMessages.Add(input.ReadBytes());
            }
            else
            {
                input.SkipLastField();
            }
        }

        foreach (var span in spanMessages)
        {
            spans.Add(DecodeSpan(span, serviceName, resourceAttributes, scopeName));
        }
    }

    // InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
    private static string DecodeScopeName(ByteString message)
    {
        var name = "";
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (IsLengthDelimited(tag, 1))
            {
                name = input.ReadString();
            }
            else
            {
                input.SkipLastField();
            }
        }

        return name;
    }

    // Span {
    //   bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4; string name = 5;
    //   SpanKind kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
    //   repeated KeyValue attributes = 9; uint32 dropped_attributes_count = 10; repeated Event events = 11;
    //   uint32 dropped_events_count = 12; repeated Link links = 13; uint32 dropped_links_count = 14;
    //   Status status = 15; fixed32 flags = 16; }
    private static ReceivedSpan DecodeSpan(ByteString message, string serviceName, IReadOnlyDictionary<string, object> resourceAttributes, string scopeName)
    {
        string traceId = "", spanId = "", name = "";
        string? parentSpanId = null;
        var kind = OtlpSpanKind.Unspecified;
        ulong start = 0, end = 0;
        var attributes = new Dictionary<string, object>();
        var events = new List<string>();
        var links = new List<(string, string)>();

        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag), WireFormat.GetTagWireType(tag))
            {
                case (1, WireFormat.WireType.LengthDelimited):
                    traceId = ToHex(input.ReadBytes());
                    break;
                case (2, WireFormat.WireType.LengthDelimited):
                    spanId = ToHex(input.ReadBytes());
                    break;
                case (4, WireFormat.WireType.LengthDelimited):
                    var parent = input.ReadBytes();
                    parentSpanId = parent.IsEmpty ? null : ToHex(parent);
                    break;
                case (5, WireFormat.WireType.LengthDelimited):
                    name = input.ReadString();
                    break;
                case (6, WireFormat.WireType.Varint):
                    kind = (OtlpSpanKind)input.ReadEnum();
                    break;
                case (7, WireFormat.WireType.Fixed64):
                    start = input.ReadFixed64();
                    break;
                case (8, WireFormat.WireType.Fixed64):
                    end = input.ReadFixed64();
                    break;
                case (9, WireFormat.WireType.LengthDelimited):
                    AddKeyValue(input.ReadBytes(), attributes);
                    break;
                case (11, WireFormat.WireType.LengthDelimited):
                    events.Add(DecodeEventName(input.ReadBytes()));
                    break;
                case (13, WireFormat.WireType.LengthDelimited):
                    links.Add(DecodeLink(input.ReadBytes()));
                    break;
                default:
                    input.SkipLastField();
                    break;
            }
        }

        return new ReceivedSpan(serviceName, resourceAttributes, scopeName, traceId, spanId, parentSpanId, name, kind,
            FromUnixNanoseconds(start), FromUnixNanoseconds(end), attributes, events, links);
    }

    // Span.Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
    private static string DecodeEventName(ByteString message)
    {
        var name = "";
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (IsLengthDelimited(tag, 2))
            {
                name = input.ReadString();
            }
            else
            {
                input.SkipLastField();
            }
        }

        return name;
    }

    // Span.Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; ... }
    private static (string TraceId, string SpanId) DecodeLink(ByteString message)
    {
        string traceId = "", spanId = "";
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (IsLengthDelimited(tag, 1))
            {
                traceId = ToHex(input.ReadBytes());
            }
            else if (IsLengthDelimited(tag, 2))
            {
                spanId = ToHex(input.ReadBytes());
            }
            else
            {
                input.SkipLastField();
            }
        }

        return (traceId, spanId);
    }

    // KeyValue { string key = 1; AnyValue value = 2; }
    private static void AddKeyValue(ByteString message, Dictionary<string, object> attributes)
    {
        var key = "";
        object? value = null;
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (IsLengthDelimited(tag, 1))
            {
                key = input.ReadString();
            }
            else if (IsLengthDelimited(tag, 2))
            {
                value = DecodeAnyValue(input.ReadBytes());
            }
            else
            {
                input.SkipLastField();
            }
        }

        if (value is not null)
        {
            attributes[key] = value;
        }
    }

    // AnyValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
    //   ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7; } }
    // Arrays, key-value lists and bytes are skipped (null): the tests compare scalar attributes only.
    private static object? DecodeAnyValue(ByteString message)
    {
        object? value = null;
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag), WireFormat.GetTagWireType(tag))
            {
                case (1, WireFormat.WireType.LengthDelimited):
                    value = input.ReadString();
                    break;
                case (2, WireFormat.WireType.Varint):
                    value = input.ReadBool();
                    break;
                case (3, WireFormat.WireType.Varint):
                    value = input.ReadInt64();
                    break;
                case (4, WireFormat.WireType.Fixed64):
                    value = input.ReadDouble();
                    break;
                default:
                    input.SkipLastField();
                    break;
            }
        }

        return value;
    }

    private static bool IsLengthDelimited(uint tag, int fieldNumber) =>
        WireFormat.GetTagFieldNumber(tag) == fieldNumber && WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited;

    private static string ToHex(ByteString bytes) => Convert.ToHexStringLower(bytes.Span);

    private static DateTimeOffset FromUnixNanoseconds(ulong nanoseconds) =>
        DateTimeOffset.UnixEpoch.AddTicks((long)(nanoseconds / 100));
}
