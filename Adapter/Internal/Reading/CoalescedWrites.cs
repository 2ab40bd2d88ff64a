using System.Buffers;
using Microsoft.AspNetCore.Connections.Abstractions;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.Logging;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The writes of one XREAD reply to this node's connections, gathered per connection and written when the reply has
/// been handled: a connection that gets several messages from one reply gets them in one write (their serialized
/// bytes one after the other, in order), so one flush, one transport wake-up and one socket send instead of one per
/// message. A stream entry carries up to 64 packets and a reply up to <c>ReadCount</c> entries, so under load a
/// connection typically gets many messages per reply (a broadcast: every packet of the reply).
/// <para>Every hub protocol frames its messages itself (a transport is a byte stream that may deliver several
/// messages in one read), so the client parses the same messages, in the same order. Not merged: a connection with
/// stateful reconnect (its server-side buffer numbers each write as one message, and would number a merged write as
/// one), and more than <see cref="MaxMergedBytes"/> (what is gathered is written, and gathering starts again).</para>
/// <para>Used by one reader loop only (not thread-safe). Membership is applied when an entry is handled, not when its
/// write goes out, so what each connection gets is what it would get written one by one.</para>
/// </summary>
internal sealed class CoalescedWrites(ILogger logger)
{
    /// <summary>A connection's gathered bytes are written once they pass this.</summary>
    internal const int MaxMergedBytes = 64 * 1024;

    private readonly Dictionary<HubConnectionContext, int> _index = new(ReferenceEqualityComparer.Instance);
    private readonly List<Pending> _pending = [];
    private List<Task>? _writing;
    private List<byte[]>? _rentedInFlight;

    private struct Pending(HubConnectionContext connection, SerializedHubMessage first)
    {
        public HubConnectionContext Connection = connection;
        public SerializedHubMessage? First = first; // the only message so far (written as it is), or null once merged
        public byte[]? Buffer;
        public int Length;
        public int Count = 1;
    }

    /// <summary>Connections with writes gathered.</summary>
    public int Count => _pending.Count;

    /// <summary>Gathers <paramref name="message"/> for <paramref name="connection"/>, after what it already got from
    /// this reply.</summary>
    public void Add(HubConnectionContext connection, SerializedHubMessage message)
    {
        if (!_index.TryGetValue(connection, out var i))
        {
            _index.Add(connection, _pending.Count);
            _pending.Add(new Pending(connection, message));
            return;
        }

        ref var pending = ref System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending)[i];
        if (pending.First is null && pending.Buffer is null)
        {
            // Everything gathered for it went out already (a message that could not be merged): start again.
            pending.First = message;
            pending.Count = 1;
            return;
        }
        if (pending.First is { } first)
        {
            if (!Mergeable(connection) || !TryBytes(connection, first, out var firstBytes) || !TryBytes(connection, message, out var secondBytes)
                || firstBytes.Length + secondBytes.Length > MaxMergedBytes)
            {
                // Written as they are, one by one, in order.
                Write(connection, first);
                pending.First = message;
                return;
            }
            pending.First = null;
            pending.Buffer = ArrayPool<byte>.Shared.Rent(Math.Max(4096, (firstBytes.Length + secondBytes.Length) * 2));
            firstBytes.Span.CopyTo(pending.Buffer);
            secondBytes.Span.CopyTo(pending.Buffer.AsSpan(firstBytes.Length));
            pending.Length = firstBytes.Length + secondBytes.Length;
            pending.Count = 2;
            return;
        }

        if (!TryBytes(connection, message, out var bytes))
        {
            WriteMerged(ref pending);
            Write(connection, message);
            return;
        }
        if (pending.Length + bytes.Length > MaxMergedBytes)
        {
            // Full: what is gathered goes out, and this message starts the next write.
            WriteMerged(ref pending);
            pending.First = message;
            pending.Count = 1;
            return;
        }
        if (pending.Buffer!.Length - pending.Length < bytes.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Min(MaxMergedBytes, Math.Max(pending.Buffer.Length * 2, pending.Length + bytes.Length)));
            pending.Buffer.AsSpan(0, pending.Length).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(pending.Buffer);
            pending.Buffer = larger;
        }
        bytes.Span.CopyTo(pending.Buffer.AsSpan(pending.Length));
        pending.Length += bytes.Length;
        pending.Count++;
    }

    /// <summary>Writes what was gathered, each connection once, and waits for the writes that did not complete at once
    /// (a connection's transport full: the reader slows down with it, as it does writing one by one).</summary>
    public ValueTask FlushAsync()
    {
        if (_pending.Count == 0)
        {
            return default;
        }
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending);
        for (var i = 0; i < span.Length; i++)
        {
            ref var pending = ref span[i];
            if (pending.First is { } only)
            {
                Write(pending.Connection, only);
            }
            else
            {
                WriteMerged(ref pending);
            }
        }
        _pending.Clear();
        _index.Clear();
        return _writing is null ? default : WaitAsync();
    }

    private async ValueTask WaitAsync()
    {
        var writing = _writing!;
        _writing = null;
        try
        {
            await Task.WhenAll(writing);
        }
        finally
        {
            if (_rentedInFlight is { } rented)
            {
                _rentedInFlight = null;
                foreach (var buffer in rented)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }
    }

    /// <summary>A connection whose writes may be merged: without stateful reconnect (there each write is one numbered
    /// message in the server's resend buffer).</summary>
    private static bool Mergeable(HubConnectionContext connection)
#pragma warning disable CA2252 // IStatefulReconnectFeature is marked preview; only its presence is looked at
        => connection.Features.Get<IStatefulReconnectFeature>() is null;
#pragma warning restore CA2252

    /// <summary>The message's bytes in the connection's protocol; false when they cannot be had (the write then goes
    /// through SignalR as it is, which handles the failure as it always does).</summary>
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

    private void WriteMerged(ref Pending pending)
    {
        if (pending.Buffer is not { } buffer)
        {
            return;
        }
        var merged = new SerializedHubMessage([new SerializedMessage(pending.Connection.Protocol.Name, buffer.AsMemory(0, pending.Length))]);
        var completed = Write(pending.Connection, merged);
        if (completed)
        {
            // The bytes were copied into the connection's pipe.
            ArrayPool<byte>.Shared.Return(buffer);
        }
        else
        {
            (_rentedInFlight ??= []).Add(buffer);
        }
        pending.Buffer = null;
        pending.Length = 0;
        pending.Count = 0;
    }

    /// <summary>Starts a write; true when it completed at once.</summary>
    private bool Write(HubConnectionContext connection, SerializedHubMessage message)
    {
        ValueTask write;
        try
        {
            write = connection.WriteAsync(message, CancellationToken.None);
        }
        catch (Exception ex)
        {
            Log.WriteFailed(logger, ex, connection.ConnectionId);
            return true;
        }
        if (write.IsCompletedSuccessfully)
        {
            write.GetAwaiter().GetResult();
            return true;
        }
        (_writing ??= []).Add(LoggedAsync(write, connection));
        return false;
    }

    private async Task LoggedAsync(ValueTask write, HubConnectionContext connection)
    {
        try
        {
            await write;
        }
        catch (Exception ex)
        {
            Log.WriteFailed(logger, ex, connection.ConnectionId);
        }
    }
}
