using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>Thrown when what a recovery must replay is no longer in Redis (trimmed by MaxLength, or deleted).</summary>
internal sealed class ReplayTrimmedException(string stream) : Exception($"Entries of '{stream}' after the client's position were trimmed.")
{
    public string Stream { get; } = stream;
}

/// <summary>
/// Reads what a recovering connection missed: the packets of its hub in (after, upTo] of the shared stream and of
/// the inbox of the node that held it, merged by position (one clock orders both), page by page (never an
/// unbounded XRANGE). Trimming is checked with <c>XINFO STREAM</c>'s <c>max-deleted-entry-id</c>: before the first
/// page, and after every page (deletions only move that id forward, so a page read while nothing after its start was
/// deleted is complete). A missing stream holds nothing and lost nothing.
/// </summary>
internal sealed class ReplayReader(IDatabase db, RedisKey[] streams, string hub, int pageSize)
{
    private readonly StringCache _strings = new();
    private readonly List<ReadOnlyMemory<byte>> _packets = [];

    /// <summary>Throws <see cref="ReplayTrimmedException"/> when something after <paramref name="after"/> may be gone.</summary>
    public async Task EnsureNotTrimmedAsync(DeliveryPosition after)
    {
        foreach (var stream in streams)
        {
            if (await MayHaveLostAfterAsync(stream, after.Id))
            {
                throw new ReplayTrimmedException(stream.ToString());
            }
        }
    }

    /// <summary>The next page: packets after <paramref name="after"/> up to <paramref name="upTo"/>, in order, and the
    /// position the next page starts after (equal to <paramref name="upTo"/> when this was the last page).</summary>
    public async Task<(List<StreamEntry> Packets, DeliveryPosition Next)> ReadPageAsync(DeliveryPosition after, DeliveryPosition upTo)
    {
        var lists = new StackExchange.Redis.StreamEntry[streams.Length][];
        for (var s = 0; s < streams.Length; s++)
        {
            lists[s] = await db.StreamRangeAsync(streams[s], after.Id.ToString(), upTo.Id.ToString(), pageSize);
        }
        await EnsureNotTrimmedAsync(after);

        // A list that came back full may go on past its last id: this page ends there.
        var cut = upTo;
        foreach (var list in lists)
        {
            if (list.Length >= pageSize && StreamId.Parse(list[^1].Id.ToString()) is var last && last.CompareTo(cut.Id) < 0)
            {
                cut = new DeliveryPosition(last, int.MaxValue);
            }
        }

        var merged = lists.SelectMany(l => l).Select(e => (Id: StreamId.Parse(e.Id.ToString()), Entry: e))
            .Where(e => e.Id.CompareTo(cut.Id) <= 0)
            .OrderBy(e => e.Id)
            .ToList();
        var packets = new List<StreamEntry>();
        foreach (var (id, raw) in merged)
        {
            Decode(id, raw, after, cut, packets);
        }
        return (packets, cut);
    }

    private void Decode(StreamId id, StackExchange.Redis.StreamEntry raw, DeliveryPosition after, DeliveryPosition upTo, List<StreamEntry> into)
    {
        var pairs = new RedisValue[raw.Values.Length * 2];
        for (var i = 0; i < raw.Values.Length; i++)
        {
            pairs[2 * i] = raw.Values[i].Name;
            pairs[(2 * i) + 1] = raw.Values[i].Value;
        }
        try
        {
            var (value, _) = StreamEntryFormat.ReadFields(pairs);
            StreamEntryFormat.SplitPackets(value, _packets);
        }
        catch (InvalidDataException)
        {
            return; // the live readers logged and counted it
        }
        for (var p = 0; p < _packets.Count; p++)
        {
            var position = new DeliveryPosition(id, p);
            if (position <= after || position > upTo)
            {
                continue;
            }
            StreamEntry packet;
            try
            {
                packet = StreamEntryFormat.DecodePacket(_packets[p], _strings);
            }
            catch (InvalidDataException)
            {
                continue;
            }
            if (packet.Hub != hub || packet.Kind is not (EntryKind.All or EntryKind.Connections or EntryKind.Groups or EntryKind.Users))
            {
                continue;
            }
            packet.Position = position;
            into.Add(packet);
        }
    }

    /// <summary>Whether entries after <paramref name="id"/> may have been removed from <paramref name="stream"/>
    /// (the entry at <paramref name="id"/> itself counts: its later packets would be gone too). XDEL moves
    /// <c>max-deleted-entry-id</c>; trimming only moves the first entry, so a stream that ever lost entries
    /// (<c>entries-added</c> above <c>length</c>) and whose first entry is now after the id may have lost some after
    /// it. Both only move forward. Conservative: a false "maybe" makes a client start fresh, never miss silently.</summary>
    private async Task<bool> MayHaveLostAfterAsync(RedisKey stream, StreamId id)
    {
        RedisResult info;
        try
        {
            info = await db.ExecuteAsync("XINFO", "STREAM", stream);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("no such key", StringComparison.OrdinalIgnoreCase))
        {
            return false; // never written, or expired whole: nothing in it to replay
        }
        var fields = (RedisResult[])info!;
        long length = -1, added = -1;
        StreamId? maxDeleted = null, first = null;
        for (var i = 0; i + 1 < fields.Length; i += 2)
        {
            switch (fields[i].ToString())
            {
                case "length": length = (long)fields[i + 1]; break;
                case "entries-added": added = (long)fields[i + 1]; break;
                case "max-deleted-entry-id": maxDeleted = StreamId.TryParse(fields[i + 1].ToString(), out var d) ? d : default; break;
                case "recorded-first-entry-id": first = StreamId.TryParse(fields[i + 1].ToString(), out var f) ? f : default; break;
                default: break;
            }
        }
        if (added < 0 || maxDeleted is null || first is null)
        {
            throw new InvalidOperationException("XINFO STREAM did not report entries-added, max-deleted-entry-id and recorded-first-entry-id: connection-state recovery needs Redis 7.0 or later.");
        }
        return maxDeleted.Value.CompareTo(id) >= 0 || (added > length && first.Value.CompareTo(id) > 0);
    }
}
