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

    /// <summary>Whether the window holds an entry appended to <paramref name="channel"/>: only those channels have
    /// anything to republish.</summary>
    public bool Holds(string channel)
    {
        foreach (var entry in _entries)
        {
            if (entry.Channel == channel)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Redis holds <paramref name="last"/> as this node's last sequence number on <paramref name="channel"/>,
    /// but <paramref name="next"/> is the one to append there: the numbers between were lost. Plans their republication
    /// from the window, in order; an entry after a hole the window cannot fill must be forced past it.</summary>
    public RepairPlan PlanRepair(long last, long next, string channel = "")
        => PlanRepair(new Dictionary<string, ChannelLoss>(StringComparer.Ordinal) { [channel] = new(last, next) });

    /// <summary>The same for several channels at once (after Redis restarted empty): one plan, in the order the entries
    /// were first appended, so that republishing keeps every sender's order across channels.</summary>
    public RepairPlan PlanRepair(IReadOnlyDictionary<string, ChannelLoss> losses)
    {
        ArgumentNullException.ThrowIfNull(losses);
        var republish = new List<(PublishedEntry Entry, bool Force)>();
        var expected = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (channel, loss) in losses)
        {
            expected[channel] = loss.Last + 1;
        }
        long lost = 0;
        foreach (var entry in _entries)
        {
            if (!losses.TryGetValue(entry.Channel, out var loss) || entry.Sequence <= loss.Last || entry.Sequence >= loss.Next)
            {
                continue;
            }
            var wanted = expected[entry.Channel];
            var force = entry.Sequence != wanted;
            lost += entry.Sequence - wanted;
            republish.Add((entry, force));
            expected[entry.Channel] = entry.Sequence + 1;
        }
        var forceNext = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (channel, loss) in losses)
        {
            lost += loss.Next - expected[channel];
            if (expected[channel] != loss.Next)
            {
                forceNext.Add(channel);
            }
        }
        return new RepairPlan(republish, forceNext, lost);
    }
}

/// <summary>On one channel: Redis holds <paramref name="Last"/> as this node's last number, <paramref name="Next"/> is
/// the next one to append.</summary>
internal readonly record struct ChannelLoss(long Last, long Next);

/// <summary>What the publisher keeps of an entry it appended, to append it again if Redis loses it; its channel is ""
/// (the shared stream) or the node whose inbox it went to. <paramref name="Packet"/> is the packet's bytes inside the
/// stream entry it was sent in (one array per entry, not per packet: fewer objects for the GC to keep).</summary>
internal readonly record struct PublishedEntry(long Sequence, ReadOnlyMemory<byte> Packet, long PublishedAt, ActivityContext Context, string Channel = "");

/// <summary>The entries to append again (each forced past a hole when it cannot follow the previous one on its
/// channel), the channels whose next new entry must be forced too, and how many of this node's numbers are lost for
/// good.</summary>
internal sealed record RepairPlan(IReadOnlyList<(PublishedEntry Entry, bool Force)> Republish, IReadOnlySet<string> ForceNextChannels, long Lost)
{
    /// <summary>Some channel's next new entry must be forced.</summary>
    public bool ForceNext => ForceNextChannels.Count > 0;
}
