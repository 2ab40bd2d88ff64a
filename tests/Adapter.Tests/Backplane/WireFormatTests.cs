using System.Runtime.InteropServices;
using Microsoft.AspNetCore.SignalR;
using SignalR.RedisStreams.Internal;
using NameValueEntry = StackExchange.Redis.NameValueEntry;
using StreamEntry = SignalR.RedisStreams.Internal.StreamEntry;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>Golden bytes of the wire format (see <see cref="StreamEntryFormat"/>): a change here breaks mixed-version
/// clusters, so the expected bytes are written out by hand from the documented layout.</summary>
public sealed class WireFormatTests
{
    /// <summary>The header of every sample entry, before its kind's payload: version 2, sequence 42, the kind (xx),
    /// flags 0, node "node-a", hub "Chat.Hub", and the 55-byte traceparent.</summary>
    private const string SampleHeader =
        "02 2a xx 00 06 6e 6f 64 65 2d 61 08 43 68 61 74 2e 48 75 62 37 " +
        "30 30 2d 30 61 66 37 36 35 31 39 31 36 63 64 34 33 64 64 38 34 34 38 65 62 32 31 31 63 38 30 33 31 39 63 2d " +
        "62 37 61 64 36 62 37 31 36 39 32 30 33 33 33 31 2d 30 31";

    private static readonly SerializedMessage[] JsonEmptyObject = [new("json", "{}"u8.ToArray())];

    public static TheoryData<string, string> GoldenPayloads() => new()
    {
        // strs excluded ["a"], msgs [json: {}]
        { "All", "01 01 61 01 04 6a 73 6f 6e 02 7b 7d" },
        // strs ["c1", "c2"], msgs []
        { "Connections", "02 02 63 31 02 63 32 00" },
        // strs groups ["g1", "g2"], strs excluded [], msgs []
        { "Groups", "02 02 67 31 02 67 32 00 00" },
        // strs users ["ü"] (UTF-8 c3 bc), msgs [json: {}]
        { "Users", "01 02 c3 bc 01 04 6a 73 6f 6e 02 7b 7d" },
        // target "n2", connection "c", group "g", add, ack 300 (varint ac 02)
        { "GroupCommand", "02 6e 32 01 63 01 67 01 ac 02" },
        // target "n", ack 1
        { "Ack", "01 6e 01" },
        // target "n", connection "c", invocation "i", msgs [json: {}]
        { "Invoke", "01 6e 01 63 01 69 01 04 6a 73 6f 6e 02 7b 7d" },
        // target "n", invocation "i", completed, protocol "json", bytes [01]
        { "Result", "01 6e 01 69 00 04 6a 73 6f 6e 01 01" },
        { "Heartbeat", "" },
        { "Goodbye", "" },
    };

    [Fact]
    public void Every_entry_kind_has_golden_bytes()
    {
        var covered = GoldenPayloads().Select(row => Enum.Parse<EntryKind>((string)row[0]));

        Assert.Equal(Enum.GetValues<EntryKind>().Order(), covered.Order());
    }

    [Theory]
    [MemberData(nameof(GoldenPayloads))]
    public void Each_kind_encodes_to_its_documented_bytes_and_back(string kind, string payloadHex)
    {
        var entry = Sample(Enum.Parse<EntryKind>(kind));

        var fields = StreamEntryFormat.Encode(entry);

        var field = Assert.Single(fields);
        Assert.Equal("e", (string?)field.Name);
        var header = SampleHeader.Replace("xx", ((byte)entry.Kind).ToString("x2", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        Assert.Equal((header + " " + payloadHex).TrimEnd(), ToHex((byte[])field.Value!));

        var decoded = StreamEntryFormat.Decode(fields);
        Assert.Equal(entry.Kind, decoded.Kind);
        Assert.Equal(entry.Node, decoded.Node);
        Assert.Equal(entry.Sequence, decoded.Sequence);
        Assert.Equal(entry.Hub, decoded.Hub);
        Assert.Equal(entry.TraceParent, decoded.TraceParent);
        Assert.Equal(entry.Targets, decoded.Targets);
        Assert.Equal(entry.Excluded, decoded.Excluded);
        Assert.Equal(entry.TargetNode, decoded.TargetNode);
        Assert.Equal(entry.ConnectionId, decoded.ConnectionId);
        Assert.Equal(entry.Group, decoded.Group);
        Assert.Equal(entry.Action, decoded.Action);
        Assert.Equal(entry.AckId, decoded.AckId);
        Assert.Equal(entry.InvocationId, decoded.InvocationId);
        Assert.Equal(entry.Status, decoded.Status);
        Assert.Equal(entry.Protocol, decoded.Protocol);
        Assert.Equal(entry.Payload.ToArray(), decoded.Payload.ToArray());
        Assert.Equal(entry.Messages.Select(m => (m.ProtocolName, m.Serialized.ToArray())),
            decoded.Messages.Select(m => (m.ProtocolName, m.Serialized.ToArray())));
    }

    [Fact]
    public void Fields_appended_by_a_later_revision_are_ignored()
    {
        var fields = StreamEntryFormat.Encode(Sample(EntryKind.Ack)).Append(new NameValueEntry("x", "future")).ToArray();
        var trailing = new NameValueEntry[] { new("e", (byte[])[.. (byte[])fields[0].Value!, 0x7f, 0x01]) };

        Assert.Equal(1, StreamEntryFormat.Decode(fields).AckId);
        Assert.Equal(1, StreamEntryFormat.Decode(trailing).AckId);
    }

    [Fact]
    public void The_sequence_restart_mark_is_an_optional_appended_field()
    {
        var plain = StreamEntryFormat.Encode(Sample(EntryKind.Ack));
        var marked = plain.Append(new NameValueEntry("r", "1")).ToArray();

        Assert.DoesNotContain(plain, f => f.Name == "r");
        Assert.False(StreamEntryFormat.Decode(plain).SequenceRestarts);
        Assert.True(StreamEntryFormat.Decode(marked).SequenceRestarts);
    }

    [Fact]
    public void A_batch_is_byte_3_a_count_and_each_packet_with_its_length_and_splits_back_into_its_packets()
    {
        var packets = new[] { (byte[])[0x02, 0xaa], (byte[])[0x02, 0xbb, 0xcc], (byte[])[0x02] };
        var writer = new StreamEntryFormat.PayloadWriter();

        var batch = StreamEntryFormat.EncodeBatch(packets, 0, 3, p => p, writer);
        var single = StreamEntryFormat.EncodeBatch(packets, 1, 1, p => p, writer);

        Assert.Equal("03 03 02 02 aa 03 02 bb cc 01 02", ToHex(batch));
        Assert.Same(packets[1], single); // one packet is written as itself (format 2), not as a batch of one
        var split = new List<ReadOnlyMemory<byte>>();
        StreamEntryFormat.SplitPackets(batch, split);
        Assert.Equal(packets.Select(ToHex), split.Select(p => ToHex(p.ToArray())));
        StreamEntryFormat.SplitPackets(single, split);
        Assert.Equal([ToHex(packets[1])], split.Select(p => ToHex(p.ToArray())));
    }

    [Fact]
    public void Each_packet_placed_by_a_batch_is_its_bytes_inside_the_value()
    {
        var packets = new[] { (byte[])[0x02, 0xaa], (byte[])[0x02, 0xbb, 0xcc], (byte[])[0x02] };
        var placed = new ReadOnlyMemory<byte>[3];

        var batch = StreamEntryFormat.EncodeBatch(packets, 0, 3, p => p, new StreamEntryFormat.PayloadWriter(), placed);

        Assert.Equal(packets.Select(ToHex), placed.Select(p => ToHex(p.ToArray())));
        Assert.All(placed, p => Assert.True(MemoryMarshal.TryGetArray(p, out var inside) && ReferenceEquals(inside.Array, batch)));
    }

    [Fact]
    public void A_single_packet_in_a_buffer_its_caller_reuses_is_copied()
    {
        var buffer = new byte[] { 0x02, 0xaa };
        var placed = new ReadOnlyMemory<byte>[1];

        var single = StreamEntryFormat.EncodeBatch(new[] { buffer }, 0, 1, p => p, new StreamEntryFormat.PayloadWriter(), placed, copySingle: true);
        buffer[1] = 0xbb; // the caller writes its next packets over it

        Assert.Equal("02 aa", ToHex(single));
        Assert.Equal("02 aa", ToHex(placed[0].ToArray()));
    }

    [Fact]
    public void Each_packet_of_a_batch_decodes_with_its_own_sequence_number()
    {
        var writer = new StreamEntryFormat.PayloadWriter();
        var packets = new[] { Sample(EntryKind.Ack), Sample(EntryKind.Invoke) }
            .Select((entry, i) => { entry.Sequence = 7 + i; return StreamEntryFormat.EncodePacket(entry, new StreamEntryFormat.PayloadWriter()); })
            .ToArray();
        var split = new List<ReadOnlyMemory<byte>>();

        StreamEntryFormat.SplitPackets(StreamEntryFormat.EncodeBatch(packets, 0, 2, p => p, writer), split);

        var decoded = split.Select(p => StreamEntryFormat.DecodePacket(p, strings: null)).ToList();
        Assert.Equal([(EntryKind.Ack, 7L), (EntryKind.Invoke, 8L)], decoded.Select(e => (e.Kind, e.Sequence)));
    }

    [Theory]
    [InlineData("03 00", "a batch of no packets")]
    [InlineData("03 02 01 02", "fewer packets than its count")]
    [InlineData("03 01 05 02 aa", "a packet length past the end")]
    [InlineData("03 ff ff ff ff ff ff ff ff ff ff 01", "an overlong count")]
    public void Corrupt_batches_are_rejected_as_invalid_data(string valueHex, string what)
    {
        var value = Convert.FromHexString(valueHex.Replace(" ", "", StringComparison.Ordinal));

        var ex = Assert.Throws<InvalidDataException>(() => StreamEntryFormat.SplitPackets(value, []));
        Assert.False(string.IsNullOrWhiteSpace(ex.Message), what);
    }

    public static TheoryData<string, string[]> Garbage() => new()
    {
        { "no entry field", ["foo", "bar"] },
        { "format 1", ["v", "1", "n", "x", "s", "1", "k", "1", "h", "H", "t", "", "p", ""] },
        { "empty entry", ["e", ""] },
    };

    [Theory]
    [MemberData(nameof(Garbage))]
    public void Garbage_is_rejected_as_invalid_data(string what, string[] flat)
    {
        var fields = Enumerable.Range(0, flat.Length / 2).Select(i => new NameValueEntry(flat[2 * i], flat[2 * i + 1])).ToArray();

        var ex = Assert.Throws<InvalidDataException>(() => StreamEntryFormat.Decode(fields));
        Assert.False(string.IsNullOrWhiteSpace(ex.Message), what);
    }

    [Theory]
    [InlineData("04 01 01 00 01 78 00 00 00 00", "an unknown version")]
    [InlineData("02 01 63 00 01 78 00 00", "an unknown kind")]
    [InlineData("02 01 01 00 00 00 00 00 00", "no sender node")]
    [InlineData("02 01 01 00 01 78 00 00", "an All entry without its payload")]
    [InlineData("02 01 01 00 01 78 00 00 05", "a count larger than the payload")]
    [InlineData("02 01 01 00 01 78 00 00 01 7f 61", "a length past the end")]
    [InlineData("02 01 01 00 01 78 00 00 01 02 ff fe 00", "invalid UTF-8")]
    [InlineData("02 ff ff ff ff ff ff ff ff ff ff ff", "an overlong varint")]
    [InlineData("02 ff ff ff ff ff ff ff ff ff 01 01", "a sequence number beyond a long")]
    public void Corrupt_entries_are_rejected_as_invalid_data(string entryHex, string what)
    {
        NameValueEntry[] fields = [new("e", Convert.FromHexString(entryHex.Replace(" ", "", StringComparison.Ordinal)))];

        var ex = Assert.Throws<InvalidDataException>(() => StreamEntryFormat.Decode(fields));
        Assert.False(string.IsNullOrWhiteSpace(ex.Message), what);
    }

    private static StreamEntry Sample(EntryKind kind)
    {
        var common = (Node: "node-a", Hub: "Chat.Hub", Trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        return kind switch
        {
            EntryKind.All => new StreamEntry { Kind = kind, Node = common.Node, Sequence = 42, Hub = common.Hub, TraceParent = common.Trace, Excluded = ["a"], Messages = JsonEmptyObject },
            EntryKind.Connections => new StreamEntry { Kind = kind, Node = common.Node, Sequence = 42, Hub = common.Hub, TraceParent = common.Trace, Targets = ["c1", "c2"] },
            EntryKind.Groups => new StreamEntry { Kind = kind, Node = common.Node, Sequence = 42, Hub = common.Hub, TraceParent = common.Trace, Targets = ["g1", "g2"] },
            EntryKind.Users => new StreamEntry { Kind = kind, Node = common.Node, Sequence = 42, Hub = common.Hub, TraceParent = common.Trace, Targets = ["ü"], Messages = JsonEmptyObject },
            EntryKind.GroupCommand => new StreamEntry { Kind = kind, Node = common.Node, Sequence = 42, Hub = common.Hub, TraceParent = common.Trace, TargetNode = "n2", ConnectionId = "c", Group = "g", Action = GroupAction.Add, AckId = 300 },
            EntryKind.Ack => new StreamEntry { Kind = kind, Node = common.Node, Sequence = 42, Hub = common.Hub, TraceParent = common.Trace, TargetNode = "n", AckId = 1 },
            EntryKind.Invoke => new StreamEntry { Kind = kind, Node = common.Node, Sequence = 42, Hub = common.Hub, TraceParent = common.Trace, TargetNode = "n", ConnectionId = "c", InvocationId = "i", Messages = JsonEmptyObject },
            EntryKind.Result => new StreamEntry { Kind = kind, Node = common.Node, Sequence = 42, Hub = common.Hub, TraceParent = common.Trace, TargetNode = "n", InvocationId = "i", Status = ResultStatus.Completed, Protocol = "json", Payload = new byte[] { 1 } },
            _ => new StreamEntry { Kind = kind, Node = common.Node, Sequence = 42, Hub = common.Hub, TraceParent = common.Trace },
        };
    }

    private static string ToHex(byte[] bytes) => string.Join(' ', bytes.Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));
}
