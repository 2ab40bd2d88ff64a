using System.Buffers;
using System.Diagnostics.Metrics;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections.Abstractions;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.Logging;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The writes of one XREAD reply (or, under load, a few: <see cref="HeldWrites"/>) to this node's connections, gathered
/// per connection and written when <see cref="FlushAsync"/> is called: a connection that gets several messages from one reply gets them in one write (their serialized
/// bytes one after the other, in order), so one flush, one transport wake-up and one socket send instead of one per
/// message. A stream entry carries up to 64 packets and a reply up to <c>ReadCount</c> entries, so under load a
/// connection typically gets many messages per reply (a broadcast: every packet of the reply).
/// <para>Every hub protocol frames its messages itself (a transport is a byte stream that may deliver several
/// messages in one read), so the client parses the same messages, in the same order. Not merged: a connection with
/// stateful reconnect (its server-side buffer numbers each write as one message, and would number a merged write as
/// one), and past <see cref="MaxMergedBytes"/> (the next write starts there).</para>
/// <para>Gathering keeps references only (the messages are serialized already); the bytes are copied once, at the
/// flush, into one buffer that the connection's pipe copies from before the write returns, so one buffer serves every
/// connection in turn (a write that waits keeps its buffer, and the reader takes another from a small pool). Used by one reader loop only (not thread-safe). Membership is applied when an entry is handled,
/// not when its write goes out, so what each connection gets is what it would get written one by one.</para>
/// <para>Each write started is counted in <c>writes</c> (when given): with the messages dispatched, how many messages a
/// write carries.</para>
/// </summary>
internal sealed class CoalescedWrites(ILogger logger, Counter<long>? writes = null)
{
    /// <summary>Most bytes in one merged write: a quarter of the pause threshold of SignalR's pipe to the transport
    /// (64 KiB by default), so that a connection whose transport keeps up takes several merged writes without waiting.</summary>
    internal const int MaxMergedBytes = 16 * 1024;

    /// <summary>Most merge buffers kept for reuse (<see cref="MaxMergedBytes"/> each): one is out per connection whose
    /// write is waiting.</summary>
    private const int BuffersKept = 256;

    /// <summary>Most connections written one after the other before their transports get a turn
    /// (<see cref="FlushAsync"/>): 8 per processor, at least 16. Each write takes a buffer for the connection's
    /// pipe from the shared array pool and keeps it until the transport has sent it; the pool keeps 32 buffers of a size
    /// per processor, so a broadcast written to hundreds of connections at once took most of them new, to be collected
    /// later (cells benchmark, 100 broadcasts/s to 300 clients: 1.7 MB allocated per broadcast, 0.85 MB in waves of 16).
    /// A wave uses a quarter of the pool, which leaves room for other writers and for reads.</summary>
    internal static readonly int WaveConnections = Math.Max(16, Environment.ProcessorCount * 8);

    private readonly Dictionary<HubConnectionContext, int> _index = new(ReferenceEqualityComparer.Instance);
    private readonly List<Pending> _pending = [];

    // Every message gathered, in arrival order; each links to the next one for the same connection.
    private readonly List<(SerializedHubMessage Message, int Next)> _messages = [];

    // One connection's messages, in order, while they are written.
    private SerializedHubMessage[] _run = new SerializedHubMessage[64];

    // Merge buffers: the one the reader writes from, and those free again (the reader's own; a waiting write's buffer
    // comes back when the flush is over). Thread-safe, as a connection's remaining writes return theirs.
    private readonly ArrayPool<byte> _buffers = ArrayPool<byte>.Create(MaxMergedBytes, BuffersKept);
    private byte[]? _buffer;
    private List<Task>? _writing;

    private struct Pending(HubConnectionContext connection, int first)
    {
        public readonly HubConnectionContext Connection = connection;
        public readonly int First = first;
        public int Last = first;
        public int Count = 1;
    }

    /// <summary>Gathers <paramref name="message"/> for <paramref name="connection"/>, after what it already got from
    /// this reply.</summary>
    public void Add(HubConnectionContext connection, SerializedHubMessage message)
    {
        var at = _messages.Count;
        _messages.Add((message, -1));
        if (!_index.TryGetValue(connection, out var i))
        {
            _index.Add(connection, _pending.Count);
            _pending.Add(new Pending(connection, at));
            return;
        }
        ref var pending = ref CollectionsMarshal.AsSpan(_pending)[i];
        CollectionsMarshal.AsSpan(_messages)[pending.Last].Next = at;
        pending.Last = at;
        pending.Count++;
    }

    /// <summary>Writes what was gathered, each connection's messages in order and in as few writes as the limit allows,
    /// and waits for the writes that did not complete at once (a connection's transport full: the reader slows down
    /// with it, as it does writing one by one).</summary>
    /// <remarks>A connection whose write does not complete at once (its pipe is past the pause threshold, or another
    /// write holds it) gets the rest of its messages from one continuation that waits for that write and then goes on
    /// merging into the same buffer, instead of queueing a write (and a buffer) per merged piece.
    /// <para>A reply for more than <see cref="WaveConnections"/> connections is written in waves: after each, while the
    /// thread pool holds work (what the wave's writes woke: each connection's transport, which sends what it was given
    /// and returns its buffer), the reader goes to the back of the pool's queue before writing the next wave. Nothing
    /// is allocated for a flush that does not wait.</para></remarks>
    public async ValueTask FlushAsync()
    {
        if (_pending.Count == 0)
        {
            return;
        }
        try
        {
            for (var i = 0; i < _pending.Count; i++)
            {
                if (i > 0 && i % WaveConnections == 0 && ThreadPool.PendingWorkItemCount > 0)
                {
                    await Task.Yield();
                }
                WriteConnection(_pending[i]);
            }
        }
        finally
        {
            _pending.Clear();
            _index.Clear();
            _messages.Clear();
        }
        if (_writing is { } writing)
        {
            _writing = null;
            await Task.WhenAll(writing);
        }
    }

    private void WriteConnection(in Pending pending)
    {
        if (_run.Length < pending.Count)
        {
            _run = new SerializedHubMessage[Math.Max(pending.Count, _run.Length * 2)];
        }
        var messages = CollectionsMarshal.AsSpan(_messages);
        var n = 0;
        for (var k = pending.First; k >= 0; k = messages[k].Next)
        {
            _run[n++] = messages[k].Message;
        }
        var connection = pending.Connection;
        var merge = n > 1 && Mergeable(connection);
        _buffer ??= _buffers.Rent(MaxMergedBytes);
        int written;
        Task? waiting;
        SerializedHubMessage[] rest;
        try
        {
            written = WriteRun(connection, _run.AsSpan(0, n), merge, _buffer, logger, writes, out waiting);
            if (waiting is null)
            {
                return;
            }
            rest = written < n ? _run.AsSpan(written, n - written).ToArray() : [];
        }
        finally
        {
            Array.Clear(_run, 0, n);
        }
        // The write waits, and may copy from the buffer later: the buffer goes with it, to the rest of the messages.
        (_writing ??= []).Add(WriteRestAsync(connection, waiting, rest, merge, _buffer, _buffers, logger, writes));
        _buffer = null;
    }

    /// <summary>Writes <paramref name="run"/> in order (merged into <paramref name="buffer"/> up to the limit when
    /// <paramref name="merge"/>) until a write does not complete at once; returns how many messages were written or
    /// started, and that write in <paramref name="waiting"/> (null: all completed).</summary>
    private static int WriteRun(
        HubConnectionContext connection, ReadOnlySpan<SerializedHubMessage> run, bool merge, byte[] buffer, ILogger logger, Counter<long>? writes,
        out Task? waiting)
    {
        waiting = null;
        if (!merge)
        {
            for (var k = 0; k < run.Length; k++)
            {
                if (!Write(connection, run[k], logger, writes, out waiting))
                {
                    return k + 1;
                }
            }
            return run.Length;
        }

        var length = 0;
        var first = 0; // the first message in the buffer
        for (var k = 0; k < run.Length; k++)
        {
            if (!TryBytes(connection, run[k], out var bytes) || bytes.Length > MaxMergedBytes)
            {
                // Written as it is (SignalR handles a message it cannot serialize as it always does), after what is
                // gathered.
                if (!WriteBuffered(connection, run[first..k], buffer, length, logger, writes, out waiting))
                {
                    return k;
                }
                length = 0;
                first = k + 1;
                if (!Write(connection, run[k], logger, writes, out waiting))
                {
                    return k + 1;
                }
                continue;
            }
            if (length + bytes.Length > MaxMergedBytes)
            {
                if (!WriteBuffered(connection, run[first..k], buffer, length, logger, writes, out waiting))
                {
                    return k;
                }
                length = 0;
                first = k;
            }
            bytes.Span.CopyTo(buffer.AsSpan(length));
            length += bytes.Length;
        }
        WriteBuffered(connection, run[first..], buffer, length, logger, writes, out waiting);
        return run.Length;
    }

    /// <summary>Writes the buffer's messages as one; a single one is written as it is. True when it completed at once.</summary>
    private static bool WriteBuffered(
        HubConnectionContext connection, ReadOnlySpan<SerializedHubMessage> messages, byte[] buffer, int length, ILogger logger, Counter<long>? writes,
        out Task? waiting)
    {
        waiting = null;
        return messages.Length switch
        {
            0 => true,
            1 => Write(connection, messages[0], logger, writes, out waiting),
            _ => Write(connection, new SerializedHubMessage([new SerializedMessage(connection.Protocol.Name, buffer.AsMemory(0, length))]), logger, writes, out waiting),
        };
    }

    /// <summary>The rest of a connection's messages, after its write that waits: each merged write waits for the one
    /// before, so one buffer serves them all; it goes back to the pool at the end.</summary>
    private static async Task WriteRestAsync(
        HubConnectionContext connection, Task waiting, SerializedHubMessage[] rest, bool merge, byte[] buffer, ArrayPool<byte> buffers, ILogger logger,
        Counter<long>? writes)
    {
        try
        {
            await waiting;
            var from = 0;
            while (from < rest.Length)
            {
                from += WriteRun(connection, rest.AsSpan(from), merge, buffer, logger, writes, out var next);
                if (next is not null)
                {
                    await next;
                }
            }
        }
        finally
        {
            buffers.Return(buffer);
        }
    }

    /// <summary>A connection whose writes may be merged: without stateful reconnect (there each write is one numbered
    /// message in the server's resend buffer).</summary>
    private static bool Mergeable(HubConnectionContext connection)
#pragma warning disable CA2252 // IStatefulReconnectFeature is marked preview; only its presence is looked at
        => connection.Features.Get<IStatefulReconnectFeature>() is null;
#pragma warning restore CA2252

    /// <summary>The message's bytes in the connection's protocol; false when they cannot be had.</summary>
    private static bool TryBytes(HubConnectionContext connection, SerializedHubMessage message, out ReadOnlyMemory<byte> bytes)
    {
        try
        {
            bytes = message.GetSerializedMessage(connection.Protocol);
            return true;
        }
        catch (Exception)
        {
            bytes = default;
            return false;
        }
    }

    /// <summary>Starts a write; true when it completed at once, else the write in <paramref name="waiting"/>.</summary>
    private static bool Write(HubConnectionContext connection, SerializedHubMessage message, ILogger logger, Counter<long>? writes, out Task? waiting)
    {
        writes?.Add(1);
        var write = WriteLoggedAsync(connection, message, logger, CancellationToken.None);
        if (write.IsCompletedSuccessfully)
        {
            waiting = null;
            return true;
        }
        waiting = write.AsTask();
        return false;
    }

    /// <summary>A write to a connection whose failure is logged, not thrown (SignalR aborts a connection it cannot
    /// write to); a cancellation asked for by <paramref name="cancellationToken"/> is thrown. Every write of the
    /// backplane to a connection goes through here.</summary>
    internal static async ValueTask WriteLoggedAsync(
        HubConnectionContext connection, SerializedHubMessage message, ILogger logger, CancellationToken cancellationToken)
    {
        try
        {
            await connection.WriteAsync(message, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            Log.WriteFailed(logger, ex, connection.ConnectionId);
        }
    }
}
