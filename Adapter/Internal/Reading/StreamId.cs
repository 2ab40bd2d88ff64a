using System.Globalization;

namespace SignalR.RedisStreams.Internal;

/// <summary>A stream entry id, <c>ms-seq</c>, as two numbers, to compare ids of different streams.</summary>
internal readonly record struct StreamId(long Milliseconds, long Sequence) : IComparable<StreamId>
{
    /// <summary>Above every id.</summary>
    public static readonly StreamId Max = new(long.MaxValue, long.MaxValue);

    /// <summary>Parses <c>ms-seq</c>; throws <see cref="FormatException"/> for anything else.</summary>
    public static StreamId Parse(string id)
        => TryParse(id, out var parsed) ? parsed : throw new FormatException($"'{id}' is not a stream entry id (ms-seq).");

    /// <summary>Parses <c>ms-seq</c>; false for anything else.</summary>
    public static bool TryParse(string? id, out StreamId parsed)
    {
        parsed = default;
        var dash = id?.IndexOf('-', StringComparison.Ordinal) ?? -1;
        if (dash <= 0
            || !long.TryParse(id.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
            || !long.TryParse(id.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var seq))
        {
            return false;
        }
        parsed = new StreamId(ms, seq);
        return true;
    }

    public int CompareTo(StreamId other)
    {
        var byMs = Milliseconds.CompareTo(other.Milliseconds);
        return byMs != 0 ? byMs : Sequence.CompareTo(other.Sequence);
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Milliseconds}-{Sequence}");
}
