using System.Globalization;
using System.Text;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Where a delivered message sits in the app's streams: the id of its stream entry and its index in that entry (an
/// entry can carry a batch of packets). Ids come from one clock for every stream of the app, so positions order the
/// messages a connection gets from the shared stream and from an inbox alike.
/// <para>On the wire (connection-state recovery) a position is a fixed-width text, so that one serialized message can
/// be patched in place and positions compare as plain strings: <c>~rs:</c>, 15 digits of milliseconds, <c>-</c>,
/// 20 digits of sequence, <c>:</c>, 3 digits of index (44 characters).</para>
/// </summary>
internal readonly record struct DeliveryPosition(StreamId Id, int Index) : IComparable<DeliveryPosition>
{
    public const int TextLength = 44;
    private const string Prefix = "~rs:";

    /// <summary>The header value the sender gives a message; each receiving node overwrites it with the entry's
    /// position (<see cref="Patch"/>).</summary>
    public static readonly string Placeholder = Prefix + new string('0', 15) + "-" + new string('0', 20) + ":000";

    private static readonly byte[] PlaceholderBytes = Encoding.ASCII.GetBytes(Placeholder);

    public int CompareTo(DeliveryPosition other)
    {
        var byId = Id.CompareTo(other.Id);
        return byId != 0 ? byId : Index.CompareTo(other.Index);
    }

    public static bool operator <(DeliveryPosition a, DeliveryPosition b) => a.CompareTo(b) < 0;

    public static bool operator >(DeliveryPosition a, DeliveryPosition b) => a.CompareTo(b) > 0;

    public static bool operator <=(DeliveryPosition a, DeliveryPosition b) => a.CompareTo(b) <= 0;

    public static bool operator >=(DeliveryPosition a, DeliveryPosition b) => a.CompareTo(b) >= 0;

    public override string ToString()
        => string.Create(CultureInfo.InvariantCulture, $"{Prefix}{Id.Milliseconds:D15}-{Id.Sequence:D20}:{Index:D3}");

    /// <summary>Parses the wire text; false for anything else (a client's input: never trusted).</summary>
    public static bool TryParse(string? text, out DeliveryPosition position)
    {
        position = default;
        if (text is null || text.Length != TextLength || !text.StartsWith(Prefix, StringComparison.Ordinal) || text[19] != '-' || text[40] != ':')
        {
            return false;
        }
        if (!long.TryParse(text.AsSpan(4, 15), NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
            || !long.TryParse(text.AsSpan(20, 20), NumberStyles.None, CultureInfo.InvariantCulture, out var seq)
            || !int.TryParse(text.AsSpan(41, 3), NumberStyles.None, CultureInfo.InvariantCulture, out var index))
        {
            return false;
        }
        position = new DeliveryPosition(new StreamId(ms, seq), index);
        return true;
    }

    /// <summary>A copy of <paramref name="serialized"/> (one protocol's bytes of a message whose headers hold the
    /// <see cref="Placeholder"/>) with this position written over the placeholder; null when the bytes hold no
    /// placeholder (a protocol that does not write ASCII strings as they are).</summary>
    public byte[]? Patch(ReadOnlySpan<byte> serialized)
    {
        // SignalR's protocols write a message's headers before its target and arguments: the first occurrence is ours,
        // whatever the arguments hold.
        var at = serialized.IndexOf(PlaceholderBytes);
        if (at < 0)
        {
            return null;
        }
        var copy = serialized.ToArray();
        var target = copy.AsSpan(at, TextLength);
        Encoding.ASCII.GetBytes(ToString(), target);
        return copy;
    }
}
