using System.Buffers;
using System.Diagnostics.Metrics;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Abstractions;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.Logging.Abstractions;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Backplane;

namespace SignalR.RedisStreams.Tests.Parts;

/// <summary>How the reader writes one XREAD reply to connections: SignalR's own <see cref="HubConnectionContext"/> over
/// a real pipe; what reaches the transport is parsed back with the hub protocol, and the transport's writes are
/// counted.</summary>
public sealed class CoalescedWritesTests
{
    [Theory]
    [InlineData("json")]
    [InlineData("messagepack")]
    public async Task A_connections_messages_of_one_reply_go_out_in_one_write_in_order_and_parse_back_one_by_one(string protocolName)
    {
        var protocol = Protocol(protocolName);
        var a = new Connection(protocol);
        var b = new Connection(protocol);
        var writes = new CoalescedWrites(NullLogger.Instance);

        writes.Add(a.Context, Message(1));
        writes.Add(b.Context, Message(101));
        writes.Add(a.Context, Message(2));
        writes.Add(b.Context, Message(102));
        writes.Add(a.Context, Message(3));
        Assert.Equal(0, a.Writes + b.Writes); // nothing goes out before the reply is handled
        await writes.FlushAsync();

        Assert.Equal(1, a.Writes);
        Assert.Equal(1, b.Writes);
        Assert.Equal("1,2,3", await a.ReceivedAsync(3));
        Assert.Equal("101,102", await b.ReceivedAsync(2));
    }

    [Fact]
    public async Task A_single_message_is_written_as_it_is()
    {
        var connection = new Connection(new JsonHubProtocol());
        var writes = new CoalescedWrites(NullLogger.Instance);

        writes.Add(connection.Context, Message(7));
        await writes.FlushAsync();

        Assert.Equal(1, connection.Writes);
        Assert.Equal("7", await connection.ReceivedAsync(1));
    }

    [Fact]
    public async Task A_connection_with_stateful_reconnect_gets_one_write_per_message()
    {
        // Its server-side buffer numbers each write as one message for the client's acks: a merged write would break
        // the numbering after a reconnect.
        var connection = new Connection(new JsonHubProtocol(), statefulReconnect: true);
        var writes = new CoalescedWrites(NullLogger.Instance);

        for (var i = 1; i <= 4; i++)
        {
            writes.Add(connection.Context, Message(i));
        }
        await writes.FlushAsync();

        Assert.Equal(4, connection.Writes);
        Assert.Equal("1,2,3,4", await connection.ReceivedAsync(4));
    }

    [Fact]
    public async Task Past_the_size_limit_what_is_gathered_goes_out_and_gathering_starts_again_in_order()
    {
        var connection = new Connection(new JsonHubProtocol());
        using var counted = new WriteCounter();
        var writes = new CoalescedWrites(NullLogger.Instance, counted.Counter);
        var padding = new string('x', (CoalescedWrites.MaxMergedBytes / 2) - 512);

        for (var i = 1; i <= 5; i++)
        {
            writes.Add(connection.Context, Message(i, padding));
        }
        // The transport side reads meanwhile: should the writes pass the pipe's pause threshold, the flush waits for it.
        var received = connection.ReceivedAsync(5);
        await writes.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));

        // Just under half the limit each: two fit in one write, so 5 messages take 3 writes.
        Assert.Equal(3, connection.Writes);
        Assert.Equal(3, counted.Total);
        Assert.Equal("1,2,3,4,5", await received);
    }

    [Fact]
    public async Task A_connection_whose_transport_is_full_gets_the_rest_merged_and_in_order_once_it_drains_without_holding_back_the_others()
    {
        var slow = new Connection(new JsonHubProtocol());
        var fast = new Connection(new JsonHubProtocol());
        using var counted = new WriteCounter();
        var writes = new CoalescedWrites(NullLogger.Instance, counted.Counter);
        var padding = new string('x', (CoalescedWrites.MaxMergedBytes / 2) - 512);

        // 20 messages of just under half the limit: 10 merged writes, about 160 KiB, past the pipe's pause threshold
        // (64 KiB) while nobody reads the slow connection's transport.
        for (var i = 1; i <= 20; i++)
        {
            writes.Add(slow.Context, Message(i, padding));
            writes.Add(fast.Context, Message(100 + i));
        }
        var flush = writes.FlushAsync().AsTask();

        // The other connection got everything in one write at once; the flush waits for the slow one.
        Assert.Equal(1, fast.Writes);
        Assert.Equal(string.Join(',', Enumerable.Range(101, 20)), await fast.ReceivedAsync(20));
        Assert.False(flush.IsCompleted);
        Assert.InRange(slow.Writes, 1, 9);

        // Once its transport drains, the rest goes out, still merged two by two, in order.
        Assert.Equal(string.Join(',', Enumerable.Range(1, 20)), await slow.ReceivedAsync(20));
        await flush.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(10, slow.Writes);

        // The next flush writes as before (the buffer that waited came back).
        writes.Add(slow.Context, Message(21));
        writes.Add(slow.Context, Message(22));
        await writes.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(11, slow.Writes);
        Assert.Equal("21,22", await slow.ReceivedAsync(2));

        // Every write was counted, those made after a wait included.
        Assert.Equal(slow.Writes + fast.Writes, counted.Total);
    }

    [Fact]
    public async Task A_reply_for_more_connections_than_a_wave_reaches_each_in_one_write_in_order_with_the_thread_pool_busy()
    {
        // More than three waves, written while the thread pool holds queued work, so that the flush goes to the back of
        // its queue between waves; one connection in the second wave has a full transport and waits.
        var count = (3 * CoalescedWrites.WaveConnections) + 5;
        var connections = Enumerable.Range(0, count).Select(_ => new Connection(new JsonHubProtocol())).ToArray();
        var slow = connections[CoalescedWrites.WaveConnections + 1];
        using var counted = new WriteCounter();
        var writes = new CoalescedWrites(NullLogger.Instance, counted.Counter);
        var padding = new string('x', (CoalescedWrites.MaxMergedBytes / 2) - 512);
        for (var m = 1; m <= 3; m++)
        {
            foreach (var connection in connections)
            {
                writes.Add(connection.Context, Message(m, connection == slow ? padding : ""));
            }
        }
        for (var m = 4; m <= 20; m++)
        {
            writes.Add(slow.Context, Message(m, padding)); // about 160 KiB in all: past the pipe's pause threshold
        }

        // Load, not a wait: work items that keep the pool's threads busy for a while, so that it holds queued work when
        // the flush reaches the end of a wave.
        for (var i = 0; i < 64; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem<object?>(_ => Thread.SpinWait(20_000), null, preferLocal: false);
        }
        var flush = writes.FlushAsync().AsTask();

        foreach (var connection in connections.Where(c => c != slow))
        {
            Assert.Equal("1,2,3", await connection.ReceivedAsync(3));
            Assert.Equal(1, connection.Writes);
        }
        Assert.Equal(string.Join(',', Enumerable.Range(1, 20)), await slow.ReceivedAsync(20));
        await flush.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(connections.Sum(c => c.Writes), counted.Total);

        // The next reply, for a few connections, is written at once, as before.
        writes.Add(connections[0].Context, Message(4));
        await writes.FlushAsync();
        Assert.Equal("4", await connections[0].ReceivedAsync(1));
    }

    [Fact]
    public async Task The_next_reply_starts_afresh()
    {
        var connection = new Connection(new JsonHubProtocol());
        var writes = new CoalescedWrites(NullLogger.Instance);

        writes.Add(connection.Context, Message(1));
        writes.Add(connection.Context, Message(2));
        await writes.FlushAsync();
        writes.Add(connection.Context, Message(3));
        await writes.FlushAsync();

        Assert.Equal(2, connection.Writes);
        Assert.Equal("1,2,3", await connection.ReceivedAsync(3));
    }

    private static IHubProtocol Protocol(string name) => name == "json" ? new JsonHubProtocol() : new MessagePackHubProtocol();

    /// <summary>A send as the reader has it: serialized once per protocol, both protocols present.</summary>
    internal static SerializedHubMessage Message(int n, string text = "")
    {
        var invocation = new InvocationMessage("Send", [n, text]);
        return new SerializedHubMessage(
        [
            new SerializedMessage("json", new JsonHubProtocol().GetMessageBytes(invocation)),
            new SerializedMessage("messagepack", new MessagePackHubProtocol().GetMessageBytes(invocation)),
        ]);
    }

    /// <summary>A hub connection over a real pipe; the transport side counts the writes SignalR makes to it.</summary>
    internal sealed class Connection
    {
        private readonly Pipe _output = new();
        private readonly IHubProtocol _protocol;
        private readonly CountingWriter _writer;

        public Connection(IHubProtocol protocol, bool statefulReconnect = false)
        {
            _protocol = protocol;
            _writer = new CountingWriter(_output.Writer);
            var transport = new Duplex(new Pipe().Reader, _writer);
            var context = new DefaultConnectionContext(Guid.NewGuid().ToString("N"), transport, transport);
            if (statefulReconnect)
            {
#pragma warning disable CA2252 // preview interface: only its presence matters here
                context.Features.Set<IStatefulReconnectFeature>(new StatefulReconnect());
#pragma warning restore CA2252
            }
            Context = new HubConnectionContext(context, new HubConnectionContextOptions { KeepAliveInterval = TimeSpan.FromMinutes(5) }, NullLoggerFactory.Instance)
            {
                Protocol = protocol,
            };
        }

        public HubConnectionContext Context { get; }

        public int Writes => _writer.Writes;

        /// <summary>The numbers of the first <paramref name="count"/> messages that reached the transport, parsed one by
        /// one with the connection's protocol, comma-separated.</summary>
        public async Task<string> ReceivedAsync(int count)
        {
            var numbers = new List<int>();
            while (numbers.Count < count)
            {
                var result = await _output.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                var buffer = result.Buffer;
                while (_protocol.TryParseMessage(ref buffer, new Binder(), out var message))
                {
                    var invocation = Assert.IsType<InvocationMessage>(message);
                    numbers.Add(Convert.ToInt32(invocation.Arguments[0], System.Globalization.CultureInfo.InvariantCulture));
                }
                _output.Reader.AdvanceTo(buffer.Start, buffer.End);
            }
            return string.Join(',', numbers);
        }
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>Passes everything to a real pipe's writer, counting the messages written to it.</summary>
    private sealed class CountingWriter(PipeWriter inner) : PipeWriter
    {
        private int _writes;

        public int Writes => Volatile.Read(ref _writes);

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _writes);
            return inner.WriteAsync(source, cancellationToken);
        }

        public override void Advance(int bytes) => inner.Advance(bytes);

        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);
    }

#pragma warning disable CA2252
    private sealed class StatefulReconnect : IStatefulReconnectFeature
    {
        public void OnReconnected(Func<PipeWriter, Task> notifyOnReconnect)
        {
        }

        public void DisableReconnect()
        {
        }
    }
#pragma warning restore CA2252

    private sealed class Binder : IInvocationBinder
    {
        public IReadOnlyList<Type> GetParameterTypes(string methodName) => [typeof(int), typeof(string)];

        public Type GetReturnType(string invocationId) => typeof(object);

        public Type GetStreamItemType(string streamId) => typeof(object);
    }

    /// <summary>A connection-writes counter on a meter built the way a node builds its own (the backplane's meter name,
    /// tagged with a node id of its own), summed by the tests' <see cref="CounterTotal"/>.</summary>
    private sealed class WriteCounter : IDisposable
    {
        private const string Instrument = "signalr.redis_streams.connection_writes";
        private readonly Meter _meter;
        private readonly CounterTotal _total;

        public WriteCounter()
        {
            var node = "coalesced-writes-test-" + Guid.NewGuid().ToString("N");
            _meter = new Meter(new MeterOptions(RedisStreamsTelemetry.MeterName)
            {
                Tags = [new KeyValuePair<string, object?>("signalr.redis_streams.node", node)],
            });
            Counter = _meter.CreateCounter<long>(Instrument);
            _total = new CounterTotal(Instrument, node);
        }

        public Counter<long> Counter { get; }

        public long Total => _total.Total;

        public void Dispose()
        {
            _total.Dispose();
            _meter.Dispose();
        }
    }
}
