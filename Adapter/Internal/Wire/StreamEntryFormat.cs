using System.Buffers;
using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.SignalR;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The wire format of the backplane: how one packet is laid out as the fields of one Redis stream entry.
/// <para>Every entry has these fields, in this order (readable with <c>XRANGE</c>):</para>
/// <code>
/// v  format version, "1"
/// n  sender node id
/// s  sender's sequence number, decimal; "0" = unsequenced (heartbeats, goodbyes)
/// k  kind, decimal (EntryKind)
/// h  hub (full type name); "" for node-level kinds
/// t  W3C traceparent of the producer span; "" when not traced
/// p  payload, binary, layout by kind (below)
/// </code>
/// <para>Payload primitives: <c>varint</c> = unsigned LEB128; <c>str</c> = varint byte length + UTF-8;
/// <c>strs</c> = varint count + str*; <c>bytes</c> = varint length + raw; <c>msgs</c> = varint count +
/// (str protocol name + bytes serialized hub message)* — one copy per hub protocol, serialized once by the sender.</para>
/// <code>
/// All(1)          strs excluded, msgs
/// Connections(2)  strs connection ids, msgs
/// Groups(3)       strs groups, strs excluded, msgs
/// Users(4)        strs users, msgs
/// GroupCommand(5) str target node, str connection id, str group, byte action (1 add, 2 remove), varint ack id
/// Ack(6)          str target node, varint ack id
/// Invoke(7)       str target node, str connection id, str invocation id, msgs
/// Result(8)       str target node, str invocation id, byte status (0 completed, 1 not found, 2 disconnected), str protocol, bytes completion message
/// Heartbeat(9)    empty
/// Goodbye(10)     empty
/// </code>
/// <para>Optional field, appended by the publisher only when Redis had lost this sender's earlier entries and the
/// entry could not follow the previous one (see the append script): <c>r</c> = "1", "the sender's sequence restarts
/// here". A reader that never saw this sender does not count the numbers before it as a gap.</para>
/// <para>Fields may only ever be appended (readers ignore fields they do not know); a change of layout bumps the
/// version, and readers skip versions they do not know. Malformed input throws <see cref="InvalidDataException"/>.</para>
/// </summary>
internal static class StreamEntryFormat
{
    public const string CurrentVersion = "1";

    public const string VersionField = "v";
    public const string NodeField = "n";
    public const string SequenceField = "s";
    public const string KindField = "k";
    public const string HubField = "h";
    public const string TraceParentField = "t";
    public const string PayloadField = "p";
    public const string SequenceRestartField = "r";

    private static readonly RedisValue[] KindValues = [.. Enumerable.Range(0, 256).Select(k => (RedisValue)k.ToString(CultureInfo.InvariantCulture))];

    /// <summary>The entry as field/value pairs, in wire order.</summary>
    public static NameValueEntry[] Encode(StreamEntry entry) => Encode(entry, new PayloadWriter());

    /// <summary>The same, reusing <paramref name="payload"/>'s buffer (one writer per thread).</summary>
    public static NameValueEntry[] Encode(StreamEntry entry, PayloadWriter payload)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(payload);
        payload.Reset();
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

        return
        [
            new(VersionField, CurrentVersion),
            new(NodeField, entry.Node),
            new(SequenceField, entry.Sequence),
            new(KindField, KindValues[(byte)entry.Kind]),
            new(HubField, entry.Hub),
            new(TraceParentField, entry.TraceParent ?? ""),
            new(PayloadField, payload.ToArray()),
        ];
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

    /// <summary>Decodes an entry from its field/value pairs as read (name, value, name, value, ...). Field names and
    /// numbers are compared and parsed as bytes; node ids, hub and protocol names come from <paramref name="strings"/>
    /// when given (the reader's, so that the same few strings are not allocated for every entry).</summary>
    public static StreamEntry Decode(ReadOnlySpan<RedisValue> pairs, StringCache? strings)
    {
        RedisValue version = default, node = default, sequence = default, kind = default, hub = default, trace = default, payload = default;
        var sequenceRestarts = false;
        for (var i = 0; i + 1 < pairs.Length; i += 2)
        {
            var value = pairs[i + 1];
            switch (FieldLetter(pairs[i]))
            {
                case 'v': version = value; break;
                case 'n': node = value; break;
                case 's': sequence = value; break;
                case 'k': kind = value; break;
                case 'h': hub = value; break;
                case 't': trace = value; break;
                case 'p': payload = value; break;
                case 'r': sequenceRestarts = Is(value, "1"u8); break;
                default: break; // fields appended by later versions of format 1 are ignored
            }
        }

        if (version.IsNull)
        {
            throw new InvalidDataException("The entry has no version field 'v': not written by this backplane.");
        }
        if (!Is(version, "1"u8))
        {
            throw new InvalidDataException($"Unknown format version '{version}' (this reader knows '{CurrentVersion}').");
        }
        if (node.IsNullOrEmpty)
        {
            throw new InvalidDataException("The entry has no sender node 'n'.");
        }
        if (!TryParseNumber(sequence, out var seq))
        {
            throw new InvalidDataException($"Invalid sequence number '{sequence}'.");
        }
        if (!TryParseNumber(kind, out var kindNumber) || kindNumber > byte.MaxValue || !Enum.IsDefined((EntryKind)(byte)kindNumber))
        {
            throw new InvalidDataException($"Unknown entry kind '{kind}'.");
        }
        if (payload.IsNull)
        {
            throw new InvalidDataException("The entry has no payload 'p'.");
        }

        var entryKind = (EntryKind)(byte)kindNumber;
        var reader = new PayloadReader(payload, strings);
        var hubName = hub.IsNullOrEmpty ? "" : StringOf(hub, strings);
        var nodeId = StringOf(node, strings);
        var traceParent = trace.IsNullOrEmpty ? null : (string?)trace;

        StreamEntry result = entryKind switch
        {
            EntryKind.All => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = seq, Hub = hubName, TraceParent = traceParent,
                Excluded = reader.ReadStrings(), Messages = reader.ReadMessages(),
            },
            EntryKind.Connections or EntryKind.Users => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = seq, Hub = hubName, TraceParent = traceParent,
                Targets = reader.ReadStrings(), Messages = reader.ReadMessages(),
            },
            EntryKind.Groups => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = seq, Hub = hubName, TraceParent = traceParent,
                Targets = reader.ReadStrings(), Excluded = reader.ReadStrings(), Messages = reader.ReadMessages(),
            },
            EntryKind.GroupCommand => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = seq, Hub = hubName, TraceParent = traceParent,
                TargetNode = reader.ReadName(), ConnectionId = reader.ReadString(), Group = reader.ReadString(),
                Action = ReadGroupAction(ref reader), AckId = (long)reader.ReadVarint(),
            },
            EntryKind.Ack => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = seq, Hub = hubName, TraceParent = traceParent,
                TargetNode = reader.ReadName(), AckId = (long)reader.ReadVarint(),
            },
            EntryKind.Invoke => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = seq, Hub = hubName, TraceParent = traceParent,
                TargetNode = reader.ReadName(), ConnectionId = reader.ReadString(), InvocationId = reader.ReadString(),
                Messages = reader.ReadMessages(),
            },
            EntryKind.Result => new StreamEntry
            {
                Kind = entryKind, Node = nodeId, Sequence = seq, Hub = hubName, TraceParent = traceParent,
                TargetNode = reader.ReadName(), InvocationId = reader.ReadString(), Status = ReadStatus(ref reader),
                Protocol = reader.ReadName(), Payload = reader.ReadBytes(),
            },
            _ => new StreamEntry { Kind = entryKind, Node = nodeId, Sequence = seq, Hub = hubName, TraceParent = traceParent },
        };
        // Trailing payload bytes are allowed: later revisions of format 1 may only append.
        result.SequenceRestarts = sequenceRestarts;
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

    /// <summary>A non-negative decimal number, digits only.</summary>
    private static bool TryParseNumber(RedisValue value, out long number)
    {
        number = 0;
        ReadOnlyMemory<byte> bytes = value;
        var span = bytes.Span;
        if (span.IsEmpty || span.Length > 18)
        {
            return false;
        }
        foreach (var b in span)
        {
            if (b is < (byte)'0' or > (byte)'9')
            {
                return false;
            }
            number = number * 10 + (b - '0');
        }
        return true;
    }

    private static string StringOf(RedisValue value, StringCache? strings)
    {
        ReadOnlyMemory<byte> bytes = value;
        return Utf8(bytes.Span, strings);
    }

    private static string Utf8(ReadOnlySpan<byte> bytes, StringCache? strings)
    {
        try
        {
            return strings is null ? StrictUtf8.GetString(bytes) : strings.Get(bytes);
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
            foreach (var value in values)
            {
                WriteString(value);
            }
        }

        public void WriteMessages(IReadOnlyList<SerializedMessage> messages)
        {
            WriteVarint((ulong)messages.Count);
            foreach (var message in messages)
            {
                WriteString(message.ProtocolName);
                WriteBytes(message.Serialized.Span);
            }
        }

        public byte[] ToArray() => _buffer.WrittenSpan.ToArray();
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

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
