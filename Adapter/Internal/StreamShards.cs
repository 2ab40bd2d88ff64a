using System.Globalization;
using System.Text;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The app's streams (<c>StreamCount</c> of them) and their keys: shard <c>k</c> is a full set of keys
/// (<see cref="RedisStreamsKeys"/>: stream, epoch, clock, sequences, inboxes) under one Redis Cluster hash tag, so every
/// script touches one slot. The tag comes from <c>KeyPrefix + StreamName</c>: <c>{prefix+stream}</c> for one stream
/// (kept as it is when the name already holds a tag), and for several <c>{prefix+stream:k}</c>, or
/// <c>{prefix+stream:k.j}</c> with the first <c>j</c> that puts shard <c>k</c>'s slot into the <c>k</c>-th of
/// <c>StreamCount</c> equal slot ranges: a cluster whose masters split the slots evenly (what
/// <c>redis-cli --cluster create</c> does) has each shard on its own master. A sender node writes everything to one
/// shard chosen by a stable, non-negative hash of its node id; every node reads every shard.
/// </summary>
internal static class StreamShards
{
    /// <summary>Number of hash slots of a Redis Cluster.</summary>
    public const int SlotCount = 16384;

    /// <summary>The keys of every shard, in shard order.</summary>
    public static RedisStreamsKeys[] Keys(string prefix, string streamName, int count)
    {
        var shards = new RedisStreamsKeys[count];
        for (var k = 0; k < count; k++)
        {
            shards[k] = new RedisStreamsKeys(Base(prefix + streamName, k, count));
        }
        return shards;
    }

    /// <summary>The shard sender <paramref name="nodeId"/> writes to: FNV-1a of its id, modulo the count (never negative).</summary>
    public static int ShardOf(string nodeId, int count)
    {
        ArgumentNullException.ThrowIfNull(nodeId);
        var hash = 2166136261u;
        foreach (var c in nodeId)
        {
            hash = (hash ^ c) * 16777619u;
        }
        return (int)(hash % (uint)count);
    }

    /// <summary>The start of every key of shard <paramref name="shard"/> of <paramref name="count"/> (a hash tag).</summary>
    public static string Base(string name, int shard, int count)
    {
        if (count == 1)
        {
            return TagOf(name) is not null ? name : "{" + name + "}";
        }
        var plain = name.Replace("{", "", StringComparison.Ordinal).Replace("}", "", StringComparison.Ordinal);
        var low = shard * SlotCount / count;
        var high = (shard + 1) * SlotCount / count;
        var shardText = shard.ToString(CultureInfo.InvariantCulture);
        for (var j = 0; j < 10_000; j++)
        {
            var tag = plain + ":" + shardText + (j == 0 ? "" : "." + j.ToString(CultureInfo.InvariantCulture));
            var slot = Slot(tag);
            if (slot >= low && slot < high)
            {
                return "{" + tag + "}";
            }
        }
        return "{" + plain + ":" + shardText + "}"; // not reached in practice: about count tries are needed
    }

    /// <summary>The hash tag of a key (the text between its first <c>{</c> and the next <c>}</c>, when not empty), or null.</summary>
    public static string? TagOf(string key)
    {
        var open = key.IndexOf('{', StringComparison.Ordinal);
        if (open < 0)
        {
            return null;
        }
        var close = key.IndexOf('}', open + 1);
        return close > open + 1 ? key[(open + 1)..close] : null;
    }

    /// <summary>The cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key without one, mod 16384.</summary>
    public static int SlotOfKey(string key) => Slot(TagOf(key) ?? key);

    private static int Slot(string hashed)
    {
        ushort crc = 0;
        foreach (var b in Encoding.UTF8.GetBytes(hashed))
        {
            crc ^= (ushort)(b << 8);
            for (var bit = 0; bit < 8; bit++)
            {
                crc = (crc & 0x8000) != 0 ? (ushort)((crc << 1) ^ 0x1021) : (ushort)(crc << 1);
            }
        }
        return crc % SlotCount;
    }
}
