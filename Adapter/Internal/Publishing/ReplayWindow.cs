using System.Diagnostics;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>What this node appended recently (at most <c>ReplayWindow</c> old and <c>MaxLength</c> entries), kept to
/// append it again when Redis is found to have lost it; and the plan of that repair. Used by the publisher only.</summary>
internal sealed class ReplayWindow(TimeSpan window, int maxCount)
{
    private readonly Queue<PublishedEntry> _entries = new();
    private int _count;

    /// <summary>Entries held now (read by other threads for logs).</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Keeps an entry Redis confirmed; drops what fell out of the window by age or count.</summary>
    public void Add(PublishedEntry entry)
    {
        _entries.Enqueue(entry);
        while (_entries.Count > 0
            && (_entries.Count > maxCount || Stopwatch.GetElapsedTime(_entries.Peek().PublishedAt, entry.PublishedAt) > window))
        {
            _entries.Dequeue();
        }
        Volatile.Write(ref _count, _entries.Count);
    }

    /// <summary>Redis holds <paramref name="last"/> as this node's last sequence number, but <paramref name="next"/> is
    /// the one to append: the numbers between were lost. Plans their republication from the window, in order; an entry
    /// after a hole the window cannot fill must be forced past it.</summary>
    public RepairPlan PlanRepair(long last, long next)
    {
        var republish = new List<(PublishedEntry Entry, bool Force)>();
        var expected = last + 1;
        long lost = 0;
        foreach (var entry in _entries)
        {
            if (entry.Sequence <= last || entry.Sequence >= next)
            {
                continue;
            }
            var force = entry.Sequence != expected;
            lost += entry.Sequence - expected;
            republish.Add((entry, force));
            expected = entry.Sequence + 1;
        }
        lost += next - expected;
        return new RepairPlan(republish, ForceNext: expected != next, Lost: lost);
    }
}

/// <summary>What the publisher keeps of an entry it appended, to append it again if Redis loses it.</summary>
internal readonly record struct PublishedEntry(long Sequence, NameValueEntry[] Fields, long PublishedAt, ActivityContext Context);

/// <summary>The entries to append again (each forced past a hole when it cannot follow the previous one), whether the
/// next new entry must be forced too, and how many of this node's numbers are lost for good.</summary>
internal sealed record RepairPlan(IReadOnlyList<(PublishedEntry Entry, bool Force)> Republish, bool ForceNext, long Lost);
