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
/// connection in turn. Used by one reader loop only (not thread-safe). Membership is applied when an entry is handled,
/// not when its write goes out, so what each connection gets is what it would get written one by one.</para>
/// </summary>
internal sealed class CoalescedWrites(ILogger logger)
{
    /// <summary>Most bytes in one merged write.</summary>
    internal const int MaxMergedBytes = 64 * 1024;

    private readonly Dictionary<HubConnectionContext, int> _index = new(ReferenceEqualityComparer.Instance);
    private readonly List<Pending> _pending = [];

    // Every message gathered, in arrival order; each links to the next one for the same connection.
    private readonly List<(SerializedHubMessage Message, int Next)> _messages = [];

    private byte[] _buffer = new byte[4096];
    private List<Task>? _writing;

    private struct Pending(HubConnectionContext connection, int first)
    {
        public readonly HubConnectionContext Connection = connection;
        public readonly int First = first;
        public int Last = first;
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
    }

    /// <summary>Writes what was gathered, each connection's messages in order and in as few writes as the limit allows,
    /// and waits for the writes that did not complete at once (a connection's transport full: the reader slows down
    /// with it, as it does writing one by one).</summary>
    public ValueTask FlushAsync()
    {
        if (_pending.Count == 0)
        {
            return default;
        }
        try
        {
            foreach (var pending in CollectionsMarshal.AsSpan(_pending))
            {
                WriteConnection(pending);
            }
        }
        finally
        {
            _pending.Clear();
            _index.Clear();
            _messages.Clear();
        }
        return _writing is null ? default : WaitAsync();
    }

    private void WriteConnection(in Pending pending)
    {
        var connection = pending.Connection;
        var messages = CollectionsMarshal.AsSpan(_messages);
        var first = messages[pending.First];
        if (first.Next < 0 || !Mergeable(connection))
        {
            for (var k = pending.First; k >= 0; k = messages[k].Next)
            {
                Write(connection, messages[k].Message);
            }
            return;
        }

        var length = 0;
        var count = 0;
        var single = -1; // the one message in the buffer, written as it is when nothing joins it
        for (var k = pending.First; k >= 0; k = messages[k].Next)
        {
            var message = messages[k].Message;
            if (!TryBytes(connection, message, out var bytes))
            {
                // SignalR writes it as it is, and handles the failure as it always does.
                WriteBuffered(connection, ref length, ref count, single);
                Write(connection, message);
                continue;
            }
            if (length + bytes.Length > MaxMergedBytes)
            {
                WriteBuffered(connection, ref length, ref count, single);
            }
            if (bytes.Length > MaxMergedBytes)
            {
                Write(connection, message);
                continue;
            }
            if (_buffer.Length < length + bytes.Length)
            {
                Array.Resize(ref _buffer, Math.Min(MaxMergedBytes, Math.Max(_buffer.Length * 2, length + bytes.Length)));
            }
            bytes.Span.CopyTo(_buffer.AsSpan(length));
            length += bytes.Length;
            single = count == 0 ? k : -1;
            count++;
        }
        WriteBuffered(connection, ref length, ref count, single);
    }

    /// <summary>Writes the buffer's messages as one; a single one is written as it is.</summary>
    private void WriteBuffered(HubConnectionContext connection, ref int length, ref int count, int single)
    {
        if (count == 1)
        {
            Write(connection, _messages[single].Message);
        }
        else if (count > 1)
        {
            var merged = new SerializedHubMessage([new SerializedMessage(connection.Protocol.Name, _buffer.AsMemory(0, length))]);
            if (!Write(connection, merged))
            {
                // The write waits (for the connection's write lock, or a full pipe) and will copy from this buffer
                // later: it keeps it, and the next writes take another one.
                _buffer = new byte[_buffer.Length];
            }
        }
        length = 0;
        count = 0;
    }

    private async ValueTask WaitAsync()
    {
        var writing = _writing!;
        _writing = null;
        await Task.WhenAll(writing);
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

    /// <summary>Starts a write; true when it completed at once.</summary>
    private bool Write(HubConnectionContext connection, SerializedHubMessage message)
    {
        var write = WriteLoggedAsync(connection, message, logger, CancellationToken.None);
        if (write.IsCompletedSuccessfully)
        {
            return true;
        }
        (_writing ??= []).Add(write.AsTask());
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
