using System.Collections.Concurrent;

namespace SignalR.RedisStreams.Internal;

/// <summary>Per sender node, the last sequence number this node processed: drops what it already had (a retried or
/// republished append), and counts the numbers it skipped (a gap: trimmed by MaxLength, or lost by Redis).
/// Written by the reader only; <see cref="Last"/> may also be read from another thread (the lag gauge).</summary>
internal sealed class SequenceTracker
{
    private readonly ConcurrentDictionary<string, long> _last = new(StringComparer.Ordinal);

    /// <summary>The sender had appended up to <paramref name="sequence"/> when this node positioned its reader: what
    /// follows in the stream starts after it, so a hole is noticed even in the first entry read from that sender.</summary>
    public void SetBaseline(string sender, long sequence)
    {
        if (!_last.TryGetValue(sender, out var known) || sequence > known)
        {
            _last[sender] = sequence;
        }
    }

    /// <summary>The last sequence number processed from <paramref name="sender"/> (0 when none).</summary>
    public long Last(string sender) => _last.GetValueOrDefault(sender);

    /// <summary>True when the entry is new (and then <paramref name="missing"/> counts the sender's numbers skipped
    /// before it); false for a duplicate.</summary>
    /// <param name="sender">The sender node.</param>
    /// <param name="sequence">The entry's sequence number (at least 1).</param>
    /// <param name="sequenceRestarts">The sender's numbering restarted here because Redis lost its earlier entries.</param>
    /// <param name="missing">Numbers of this sender never seen before this entry.</param>
    public bool Accept(string sender, long sequence, bool sequenceRestarts, out long missing)
    {
        var last = _last.GetValueOrDefault(sender);
        missing = 0;
        if (sequence <= last)
        {
            return false;
        }
        // A sender not in the baseline appended everything after the start position, from its number 1 on; unless
        // its numbering restarted after Redis lost data, which is no gap for a reader that never knew it.
        if (sequence > last + 1 && (last > 0 || !sequenceRestarts))
        {
            missing = sequence - last - 1;
        }
        _last[sender] = sequence;
        return true;
    }
}
