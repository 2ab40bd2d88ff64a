using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.AspNetCore.SignalR;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The wire format of the backplane: how one packet is laid out in one Redis stream entry.
/// <para>Format 2. An entry has one field, <c>e</c>, whose value is binary: a header, then the payload of its kind.
/// One field (not one per header item, as format 1 had) because every field costs each reading node a parsed reply
/// element: 7 fields took 1.7 KB and about twice the CPU per entry read, 1 field 0.6 KB.</para>
/// <para>Primitives: <c>varint</c> = unsigned LEB128; <c>str</c> = varint byte length + UTF-8; <c>strs</c> = varint
/// count + str*; <c>bytes</c> = varint length + raw; <c>msgs</c> = varint count + (str protocol name + bytes serialized
/// hub message)* — one copy per hub protocol, serialized once by the sender.</para>
/// <code>
/// byte    format version, 2
/// varint  sender's sequence number; 0 = unsequenced (heartbeats, goodbyes)
/// byte    kind (EntryKind)
/// byte    flags, 0 (reserved)
/// str     sender node id
/// str     hub (full type name); "" for node-level kinds
/// str     W3C traceparent of the producer span; "" when not traced
/// payload, by kind:
///   All(1)          strs excluded, msgs
///   Connections(2)  strs connection ids, msgs
///   Groups(3)       strs groups, strs excluded, msgs
///   Users(4)        strs users, msgs
///   GroupCommand(5) str target node, str connection id, str group, byte action (1 add, 2 remove), varint ack id
///   Ack(6)          str target node, varint ack id
///   Invoke(7)       str target node, str connection id, str invocation id, msgs
///   Result(8)       str target node, str invocation id, byte status (0 completed, 1 not found, 2 disconnected), str protocol, bytes completion message
///   Heartbeat(9)    empty
///   Goodbye(10)     empty
/// </code>
/// <para>Format 3, a batch: when the publisher appends several packets in a row to the same stream, they go in one
/// entry, whose <c>e</c> holds <c>byte 3, varint count, then count times bytes (one packet of format 2)</c>. One entry
/// instead of one per packet cuts what every reader and Redis pay per packet (the XADD, the reply element, its parse).
/// The packets keep their own sequence numbers (consecutive, of one sender and one stream).</para>
/// <para>Optional second field, added by the append script only when Redis had lost this sender's earlier entries and
/// the entry could not follow the previous one: <c>r</c> = "1", "the sender's sequence restarts at this entry's (first)
/// packet". A reader that
/// never saw this sender does not count the numbers before it as a gap.</para>
/// <para>Bytes may only ever be appended to a layout (readers ignore trailing bytes and fields they do not know); any
/// other change bumps the version, and readers skip versions they do not know (format 1 included), logged as malformed.
/// Malformed input throws <see cref="InvalidDataException"/>.</para>
/// </summary>
internal static class StreamEntryFormat
{
    /// <summary>The layout of one packet.</summary>
    public const byte CurrentVersion = 2;

    /// <summary>The layout of an entry that carries a batch of packets.</summary>
    public const byte BatchVersion = 3;

    public const string EntryField = "e";
    public const string SequenceRestartField = "r";

    /// <summary>The entry as field/value pairs, in wire order: one packet.</summary>
    public static NameValueEntry[] Encode(StreamEntry entry) => [new(EntryField, EncodePacket(entry, new PayloadWriter()))];

    /// <summary>One packet's bytes (format 2), reusing <paramref name="payload"/>'s buffer (one writer per thread).</summary>
    public static byte[] EncodePacket(StreamEntry entry, PayloadWriter payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        payload.Reset();
        WritePacket(entry, payload);
        return payload.ToArray();
    }

    /// <summary>Writes one packet (format 2) after what <paramref name="payload"/> holds already; its bytes are
    /// <c>payload.WrittenSince(start)</c>, with start the writer's length before.</summary>
    public static void WritePacket(StreamEntry entry, PayloadWriter payload)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(payload);
        payload.WriteByte(CurrentVersion);
        payload.WriteVarint((ulong)entry.Sequence);
        payload.WriteByte((byte)entry.Kind);
        payload.WriteByte(0);
        payload.WriteString(entry.Node);
        payload.WriteString(entry.Hub);
        payload.WriteString(entry.TraceParent ?? "");
        switch (entry.Kind)
        {
            case EntryKind.All:
                payload.WriteStrings(entry.Excluded);
                payload.WriteMessages(entry.Messages);
                break;
            case EntryKind.Connections:
            case EntryKind.Users:
                payload.WriteStrings(entry.Targets);
                payload.WriteMessages(entry.Messages);
                break;
            case EntryKind.Groups:
                payload.WriteStrings(entry.Targets);
                payload.WriteStrings(entry.Excluded);
                payload.WriteMessages(entry.Messages);
                break;
            case EntryKind.GroupCommand:
                payload.WriteString(entry.TargetNode);
                payload.WriteString(entry.ConnectionId);
                payload.WriteString(entry.Group);
                payload.WriteByte((byte)entry.Action);
                payload.WriteVarint((ulong)entry.AckId);
                break;
            case EntryKind.Ack:
                payload.WriteString(entry.TargetNode);
                payload.WriteVarint((ulong)entry.AckId);
                break;
            case EntryKind.Invoke:
                payload.WriteString(entry.TargetNode);
                payload.WriteString(entry.ConnectionId);
                payload.WriteString(entry.InvocationId);
                payload.WriteMessages(entry.Messages);
                break;
            case EntryKind.Result:
                payload.WriteString(entry.TargetNode);
                payload.WriteString(entry.InvocationId);
                payload.WriteByte((byte)entry.Status);
                payload.WriteString(entry.Protocol);
                payload.WriteBytes(entry.Payload.Span);
                break;
            case EntryKind.Heartbeat:
            case EntryKind.Goodbye:
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(entry), entry.Kind, "Unknown entry kind.");
        }
    }

    /// <summary>The value of an entry that carries <paramref name="count"/> packets from <paramref name="packets"/>
    /// starting at <paramref name="start"/>: the packet itself when there is one (the same array when the packet is a
    /// whole one, unless <paramref name="copySingle"/>: its bytes are in a buffer the caller reuses), else a batch
    /// (format 3). When <paramref name="placed"/> is given (<paramref name="count"/> long), it gets each packet's bytes
    /// inside the returned value, so that a caller can keep them without a copy of its own.</summary>
    public static byte[] EncodeBatch<T>(
        IReadOnlyList<T> packets, int start, int count, Func<T, ReadOnlyMemory<byte>> bytesOf, PayloadWriter payload,
        Span<ReadOnlyMemory<byte>> placed = default, bool copySingle = false)
    {
        ArgumentNullException.ThrowIfNull(packets);
        ArgumentNullException.ThrowIfNull(bytesOf);
        ArgumentNullException.ThrowIfNull(payload);
        if (count == 1)
        {
            var packet = bytesOf(packets[start]);
            var whole = !copySingle && MemoryMarshal.TryGetArray(packet, out var segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length
                ? segment.Array
                : packet.ToArray();
            if (!placed.IsEmpty)
            {
                placed[0] = whole;
            }
            return whole;
        }
        payload.Reset();
        payload.WriteByte(BatchVersion);
        payload.WriteVarint((ulong)count);
        for (var i = start; i < start + count; i++)
        {
            payload.WriteBytes(bytesOf(packets[i]).Span);
        }
        var value = payload.ToArray();
        if (!placed.IsEmpty)
        {
            var offset = 1 + VarintLength((ulong)count);
            for (var k = 0; k < count; k++)
            {
                var length = bytesOf(packets[start + k]).Length;
                offset += VarintLength((ulong)length);
                placed[k] = value.AsMemory(offset, length);
                offset += length;
            }
        }
        return value;
    }

    private static int VarintLength(ulong value)
    {
        var length = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            length++;
        }
        return length;
    }

    /// <summary>Decodes an entry's fields. Throws <see cref="InvalidDataException"/> when they are not an entry of a
    /// version this reader knows.</summary>
    public static StreamEntry Decode(IReadOnlyList<NameValueEntry> fields)
    {
        ArgumentNullException.ThrowIfNull(fields);
        var pairs = new RedisValue[fields.Count * 2];
        for (var i = 0; i < fields.Count; i++)
        {
            pairs[2 * i] = fields[i].Name;
            pairs[2 * i + 1] = fields[i].Value;
        }
        return Decode(pairs, strings: null);
    }

    /// <summary>Decodes an entry of one packet from its field/value pairs as read (name, value, name, value, ...).</summary>
    public static StreamEntry Decode(ReadOnlySpan<RedisValue> pairs, StringCache? strings)
    {
        var (value, sequenceRestarts) = ReadFields(pairs);
        if (IsBatch(value))
        {
            throw new InvalidDataException("The entry is a batch of packets (format 3): split it with SplitPackets.");
        }
        var entry = DecodePacket(value, strings);
        entry.SequenceRestarts = sequenceRestarts;
        return entry;
    }

    /// <summary>An entry's value (one packet, or a batch) and whether its first packet restarts its sender's sequence.
    /// Field names are compared as bytes.</summary>
    public static (ReadOnlyMemory<byte> Value, bool SequenceRestarts) ReadFields(ReadOnlySpan<RedisValue> pairs)
    {
        RedisValue value = default;
        var sequenceRestarts = false;
        var hasVersionField = false;
        for (var i = 0; i + 1 < pairs.Length; i += 2)
        {
            switch (FieldLetter(pairs[i]))
            {
                case 'e': value = pairs[i + 1]; break;
                case 'r': sequenceRestarts = Is(pairs[i + 1], "1"u8); break;
                case 'v': hasVersionField = true; break;
                default: break; // fields added by later revisions are ignored
            }
        }
        if (value.IsNull)
        {
            throw new InvalidDataException(hasVersionField
                ? "Unknown format version (an entry of format 1; this reader knows formats 2 and 3)."
                : "The entry has no field 'e': not written by this backplane.");
        }
        return (value, sequenceRestarts);
    }

    /// <summary>The value holds a batch of packets (format 3).</summary>
    public static bool IsBatch(ReadOnlyMemory<byte> value) => !value.IsEmpty && value.Span[0] == BatchVersion;

    /// <summary>The packets of an entry's value, in order: the value itself (format 2), or each packet of a batch
    /// (format 3). Throws <see cref="InvalidDataException"/> when the batch's framing is broken.</summary>
    public static void SplitPackets(ReadOnlyMemory<byte> value, List<ReadOnlyMemory<byte>> packets)
    {
        ArgumentNullException.ThrowIfNull(packets);
        packets.Clear();
        if (!IsBatch(value))
        {
            packets.Add(value);
            return;
        }
        var reader = new PayloadReader(value, strings: null);
        _ = reader.ReadByte();
        var count = reader.ReadVarint();
        if (count == 0 || count > (ulong)value.Length)
        {
            throw new InvalidDataException($"A batch of {count} packets in {value.Length} bytes.");
        }
        for (ulong i = 0; i < count; i++)
        {
            packets.Add(reader.ReadBytes());
        }
    }

    /// <summary>Decodes one packet (format 2). Numbers are parsed as bytes; node ids, hub and protocol names come from
    /// <paramref name="strings"/> when given (the reader's, so that the same few strings are not allocated for every
    /// packet).</summary>
    public static StreamEntry DecodePacket(ReadOnlyMemory<byte> value, StringCache? strings)
    {
        var reader = new PayloadReader(value, strings);
        var version = reader.ReadByte();
        if (version != CurrentVersion)
        {
            throw new InvalidDataException($"Unknown format version {version} (this reader knows {CurrentVersion} and {BatchVersion}).");
        }
        var seq = reader.ReadVarint();
        if (seq > long.MaxValue)
        {
            throw new InvalidDataException($"Invalid sequence number {seq}.");
        }
        var kindByte = reader.ReadByte();
        if (!Enum.IsDefined((EntryKind)kindByte))
        {
            throw new InvalidDataException($"Unknown entry kind {kindByte}.");
        }
        _ = reader.ReadByte(); // flags: none defined yet
        var nodeId = reader.ReadName();
        if (nodeId.Length == 0)
        {
            throw new InvalidDataException("The entry has no sender node.");
        }
        var hubName = reader.ReadName();
        var traceBytes = reader.ReadBytes();
        var traceParent = traceBytes.IsEmpty ? null : Utf8(traceBytes.Span, strings: null);
        var entryKind = (EntryKind)kindByte;
        var sequence = (long)seq;

        StreamEntry result = entryKind switch
        {
            EntryKind.All => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = sequence, Hub = hubName, TraceParent = traceParent,
                Excluded = reader.ReadStrings(), Messages = reader.ReadMessages(),
            },
            EntryKind.Connections or EntryKind.Users => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = sequence, Hub = hubName, TraceParent = traceParent,
                Targets = reader.ReadStrings(), Messages = reader.ReadMessages(),
            },
            EntryKind.Groups => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = sequence, Hub = hubName, TraceParent = traceParent,
                Targets = reader.ReadStrings(), Excluded = reader.ReadStrings(), Messages = reader.ReadMessages(),
            },
            EntryKind.GroupCommand => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = sequence, Hub = hubName, TraceParent = traceParent,
                TargetNode = reader.ReadName(), ConnectionId = reader.ReadString(), Group = reader.ReadString(),
                Action = ReadGroupAction(ref reader), AckId = (long)reader.ReadVarint(),
            },
            EntryKind.Ack => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = sequence, Hub = hubName, TraceParent = traceParent,
                TargetNode = reader.ReadName(), AckId = (long)reader.ReadVarint(),
            },
            EntryKind.Invoke => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = sequence, Hub = hubName, TraceParent = traceParent,
                TargetNode = reader.ReadName(), ConnectionId = reader.ReadString(), InvocationId = reader.ReadString(),
                Messages = reader.ReadMessages(),
            },
            EntryKind.Result => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = sequence, Hub = hubName, TraceParent = traceParent,
                TargetNode = reader.ReadName(), InvocationId = reader.ReadString(), Status = ReadStatus(ref reader),
                Protocol = reader.ReadName(), Payload = reader.ReadBytes(),
            },
            _ => new StreamEntry { Kind = entryKind, Node = nodeId, Sequence = sequence, Hub = hubName, TraceParent = traceParent },
        };
        // Trailing payload bytes are allowed: later revisions of format 2 may only append.
        return result;
    }

    private static GroupAction ReadGroupAction(ref PayloadReader reader)
    {
        var b = reader.ReadByte();
        return b is (byte)GroupAction.Add or (byte)GroupAction.Remove
            ? (GroupAction)b
            : throw new InvalidDataException($"Unknown group action {b}.");
    }

    private static ResultStatus ReadStatus(ref PayloadReader reader)
    {
        var b = reader.ReadByte();
        return b <= (byte)ResultStatus.ConnectionDisconnected
            ? (ResultStatus)b
            : throw new InvalidDataException($"Unknown result status {b}.");
    }

    /// <summary>Which field a name is: its one letter, or 0 for names of another length.</summary>
    private static char FieldLetter(RedisValue name)
    {
        ReadOnlyMemory<byte> bytes = name;
        return bytes.Length == 1 ? (char)bytes.Span[0] : '\0';
    }

    private static bool Is(RedisValue value, ReadOnlySpan<byte> expected)
    {
        ReadOnlyMemory<byte> bytes = value;
        return bytes.Span.SequenceEqual(expected);
    }

    private static string Utf8(ReadOnlySpan<byte> bytes, StringCache? strings)
    {
        try
        {
            return strings is null ? StringCache.StrictUtf8.GetString(bytes) : strings.Get(bytes);
        }
        catch (DecoderFallbackException ex)
        {
            throw new InvalidDataException("A string in the entry is not valid UTF-8.", ex);
        }
    }

    /// <summary>Writes a payload; one per thread, reused from entry to entry.</summary>
    internal sealed class PayloadWriter
    {
        private readonly ArrayBufferWriter<byte> _buffer = new(256);

        public void Reset() => _buffer.ResetWrittenCount();

        public void WriteByte(byte value) { _buffer.GetSpan(1)[0] = value; _buffer.Advance(1); }

        public void WriteVarint(ulong value)
        {
            var span = _buffer.GetSpan(10);
            var i = 0;
            while (value >= 0x80)
            {
                span[i++] = (byte)(value | 0x80);
                value >>= 7;
            }
            span[i++] = (byte)value;
            _buffer.Advance(i);
        }

        public void WriteBytes(ReadOnlySpan<byte> bytes)
        {
            WriteVarint((ulong)bytes.Length);
            _buffer.Write(bytes);
        }

        public void WriteString(string value)
        {
            var count = Encoding.UTF8.GetByteCount(value);
            WriteVarint((ulong)count);
            var span = _buffer.GetSpan(count);
            Encoding.UTF8.GetBytes(value, span);
            _buffer.Advance(count);
        }

        public void WriteStrings(IReadOnlyList<string> values)
        {
            WriteVarint((ulong)values.Count);
            for (var i = 0; i < values.Count; i++)
            {
                WriteString(values[i]);
            }
        }

        public void WriteMessages(IReadOnlyList<SerializedMessage> messages)
        {
            WriteVarint((ulong)messages.Count);
            for (var i = 0; i < messages.Count; i++)
            {
                var message = messages[i];
                WriteString(message.ProtocolName);
                WriteBytes(message.Serialized.Span);
            }
        }

        public byte[] ToArray() => _buffer.WrittenSpan.ToArray();

        /// <summary>Bytes written so far.</summary>
        public int Length => _buffer.WrittenCount;

        /// <summary>The size of the buffer (what the writer keeps between uses).</summary>
        public int Capacity => _buffer.Capacity;

        /// <summary>The bytes written from <paramref name="start"/> on, in the writer's buffer: valid until the writer
        /// is reset (a buffer outgrown stays as it was).</summary>
        public ReadOnlyMemory<byte> WrittenSince(int start) => _buffer.WrittenMemory[start..];
    }

    private ref struct PayloadReader(ReadOnlyMemory<byte> data, StringCache? strings)
    {
        private readonly ReadOnlyMemory<byte> _data = data;
        private int _position;

        public byte ReadByte()
        {
            if (_position >= _data.Length)
            {
                throw new InvalidDataException("The payload ended early.");
            }
            return _data.Span[_position++];
        }

        public ulong ReadVarint()
        {
            ulong result = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                var b = ReadByte();
                result |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return result;
                }
            }
            throw new InvalidDataException("A varint in the payload is too long.");
        }

        private int ReadLength()
        {
            var length = ReadVarint();
            if (length > (ulong)(_data.Length - _position))
            {
                throw new InvalidDataException($"A length of {length} runs past the end of the payload.");
            }
            return (int)length;
        }

        public ReadOnlyMemory<byte> ReadBytes()
        {
            var length = ReadLength();
            var result = _data.Slice(_position, length);
            _position += length;
            return result;
        }

        /// <summary>A string that varies (connection id, group, user...): always a new one.</summary>
        public string ReadString() => Utf8(ReadBytes().Span, strings: null);

        /// <summary>A string of a small set (protocol names, node ids): from the cache when there is one.</summary>
        public string ReadName() => Utf8(ReadBytes().Span, strings);

        public string[] ReadStrings()
        {
            var count = ReadCount();
            if (count == 0)
            {
                return [];
            }
            var values = new string[count];
            for (var i = 0; i < count; i++)
            {
                values[i] = ReadString();
            }
            return values;
        }

        public SerializedMessage[] ReadMessages()
        {
            var count = ReadCount();
            var messages = new SerializedMessage[count];
            for (var i = 0; i < count; i++)
            {
                var protocol = ReadName();
                messages[i] = new SerializedMessage(protocol, ReadBytes());
            }
            return messages;
        }

        private int ReadCount()
        {
            var count = ReadVarint();
            // every element takes at least one byte, so a count beyond the remaining bytes is garbage
            if (count > (ulong)(_data.Length - _position))
            {
                throw new InvalidDataException($"A count of {count} is larger than the rest of the payload.");
            }
            return (int)count;
        }
    }

}
