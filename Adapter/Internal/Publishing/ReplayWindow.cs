using System.Diagnostics;
using System.Runtime.InteropServices;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>What this node appended recently (at most <c>ReplayWindow</c> old and <c>MaxLength</c> entries), kept to
/// append it again when Redis is found to have lost it; and the plan of that repair. Used by the publisher only.</summary>
/// <remarks>The window copies each packet (up to <see cref="LargestCopied"/> bytes) into chunks of
/// <see cref="ChunkSize"/> bytes, reused oldest first as packets leave the window. A chunk is big enough to be born in
/// the large object heap, which the GC's young collections neither scan nor copy. Keeping instead the entry each packet
/// was sent in (a young array per append call), a busy node had every packet of the last tens of milliseconds survive
/// a young collection, to be copied into the older generations (about 2 MB per collection in the publish-path cell,
/// against 0.1–0.3 MB for Microsoft's backplane).</remarks>
internal sealed class ReplayWindow(TimeSpan window, int maxCount)
{
    /// <summary>Bytes per chunk: above the large object heap's threshold (85,000 bytes).</summary>
    internal const int ChunkSize = 128 * 1024;

    /// <summary>Larger packets keep the array they were sent in.</summary>
    internal const int LargestCopied = 4 * 1024;

    /// <summary>Free chunks kept for reuse; beyond that, a chunk the window no longer needs goes to the GC.</summary>
    private const int FreeChunksKept = 4;

    private readonly Queue<PublishedEntry> _entries = new();

    // Chunks holding packets of the window, oldest first (the last one is being filled), and free ones.
    private readonly Queue<Chunk> _chunks = new();
    private readonly Stack<Chunk> _free = new();
    private Chunk? _filling;
    private int _count;

    /// <summary>Entries held now (read by other threads for logs).</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Chunks in use (for tests).</summary>
    internal int ChunksInUse => _chunks.Count;

    /// <summary>Keeps an entry Redis confirmed (its packet copied into the window's own memory when small); drops what
    /// fell out of the window by age or count.</summary>
    public void Add(PublishedEntry entry)
    {
        if (entry.Packet.Length <= LargestCopied)
        {
            entry = entry with { Packet = Copy(entry.Packet.Span) };
        }
        _entries.Enqueue(entry);
        while (_entries.Count > 0
            && (_entries.Count > maxCount || Stopwatch.GetElapsedTime(_entries.Peek().PublishedAt, entry.PublishedAt) > window))
        {
            Release(_entries.Dequeue());
        }
        Volatile.Write(ref _count, _entries.Count);
    }

    private ReadOnlyMemory<byte> Copy(ReadOnlySpan<byte> packet)
    {
        var chunk = _filling;
        if (chunk is null || ChunkSize - chunk.Used < packet.Length)
        {
            chunk = _free.TryPop(out var reused) ? reused : new Chunk();
            chunk.Used = 0;
            chunk.Packets = 0;
            _chunks.Enqueue(chunk);
            _filling = chunk;
        }
        var at = chunk.Used;
        packet.CopyTo(chunk.Bytes.AsSpan(at));
        chunk.Used += packet.Length;
        chunk.Packets++;
        return chunk.Bytes.AsMemory(at, packet.Length);
    }

    /// <summary>An entry left the window: its chunk is freed once none of its packets is left (packets leave in the
    /// order they were copied, so it is always the oldest chunk's).</summary>
    private void Release(PublishedEntry entry)
    {
        if (!_chunks.TryPeek(out var oldest)
            || !MemoryMarshal.TryGetArray(entry.Packet, out var segment)
            || !ReferenceEquals(segment.Array, oldest.Bytes))
        {
            return;
        }
        if (--oldest.Packets > 0)
        {
            return;
        }
        if (oldest == _filling)
        {
            // The chunk being filled stays, and is filled again from its start (no packet is left in it).
            oldest.Used = 0;
            return;
        }
        _chunks.Dequeue();
        if (_free.Count < FreeChunksKept)
        {
            _free.Push(oldest);
        }
    }

    private sealed class Chunk
    {
        public readonly byte[] Bytes = new byte[ChunkSize];
        public int Used;
        public int Packets;
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
            // The plan owns its bytes: the chunks they are in are reused once the window moves on.
            republish.Add((entry with { Packet = entry.Packet.ToArray() }, force));
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
