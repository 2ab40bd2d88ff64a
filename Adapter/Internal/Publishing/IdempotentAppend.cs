using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Where a retried XADD is made idempotent: entries are appended by one Lua script, a batch of them per call, which
/// in the same atomic step as each XADD compares the entry's sequence number with the last one Redis holds for its
/// node.
/// <list type="bullet">
/// <item>a retry of an append that was applied but whose reply was lost finds its number already there, and is not
/// appended again;</item>
/// <item>an entry is appended only right after its predecessor, so retried batches never reorder;</item>
/// <item>a Redis whose epoch key differs restarted empty, and a Redis whose last number is behind lost this node's
/// latest entries (no persistence, or a replica promoted without them): both are reported to the publisher, which
/// repairs them from its replay window.</item>
/// </list>
/// One call per batch (not per entry) keeps the cost per packet low for both Redis and this node.
/// </summary>
internal static class IdempotentAppend
{
    /// <summary>KEYS: stream, sequence hash, epoch. ARGV: epoch, node, max length, entry count, then per entry: its
    /// sequence, force (1 = may jump over numbers Redis lost), its field count, its field/value pairs.
    /// Returns {1, last, ids} all in the stream; {-2, last, ids} the entry after those in ids lacks its predecessors;
    /// {-1, epoch, {}} Redis holds another epoch. ids has one element per entry handled, in order: its new id, or ''
    /// when it was already there.</summary>
    private const string Script = """
        local e = redis.call('GET', KEYS[3])
        if e ~= ARGV[1] then return {-1, e or '', {}} end
        local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
        local start = last
        local ids = {}
        local i = 5
        for k = 1, tonumber(ARGV[4]) do
          local seq = tonumber(ARGV[i])
          local n = tonumber(ARGV[i + 2])
          if seq <= last then
            ids[k] = ''
          elseif seq ~= last + 1 and ARGV[i + 1] ~= '1' then
            if last ~= start then redis.call('HSET', KEYS[2], ARGV[2], last) end
            return {-2, last, ids}
          else
            ids[k] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, i + 3, i + 2 + n * 2))
            last = seq
          end
          i = i + 3 + n * 2
        end
        if last ~= start then redis.call('HSET', KEYS[2], ARGV[2], last) end
        return {1, last, ids}
        """;

    /// <summary>Appends <paramref name="entries"/> in order, each only after its predecessor. A forced entry may jump
    /// over numbers Redis lost and cannot get back; it then carries the "sequence restarts" field.</summary>
    public static async Task<AppendResult> AppendAsync(
        IDatabase database, RedisStreamsKeys keys, string epoch, string node, IReadOnlyList<PendingAppend> entries, int maxLength)
    {
        var length = 4;
        foreach (var entry in entries)
        {
            length += 3 + (entry.Fields.Length + (entry.Force ? 1 : 0)) * 2;
        }
        var args = new RedisValue[length];
        args[0] = epoch;
        args[1] = node;
        args[2] = maxLength;
        args[3] = entries.Count;
        var i = 4;
        foreach (var entry in entries)
        {
            var fieldCount = entry.Fields.Length + (entry.Force ? 1 : 0);
            args[i++] = entry.Sequence;
            args[i++] = entry.Force ? 1 : 0;
            args[i++] = fieldCount;
            foreach (var field in entry.Fields)
            {
                args[i++] = field.Name;
                args[i++] = field.Value;
            }
            if (entry.Force)
            {
                args[i++] = StreamEntryFormat.SequenceRestartField;
                args[i++] = "1";
            }
        }

        var reply = (RedisResult[])(await database.ScriptEvaluateAsync(Script, [keys.Stream, keys.Sequences, keys.Epoch], args))!;
        var outcome = (AppendOutcome)(int)reply[0];
        if (outcome == AppendOutcome.EpochChanged)
        {
            return new AppendResult(outcome, 0, []);
        }
        if (outcome is not (AppendOutcome.Appended or AppendOutcome.SequenceMissing))
        {
            throw new InvalidDataException($"The append script answered an unknown code {(int)reply[0]}.");
        }
        var handled = (RedisResult[])reply[2]!;
        var ids = new string?[handled.Length];
        for (var k = 0; k < handled.Length; k++)
        {
            var id = (string?)handled[k];
            ids[k] = string.IsNullOrEmpty(id) ? null : id;
        }
        return new AppendResult(outcome, (long)reply[1], ids);
    }
}

/// <summary>One entry to append: its sequence number, its fields, and whether it may jump over lost numbers.</summary>
internal readonly record struct PendingAppend(long Sequence, NameValueEntry[] Fields, bool Force);

internal enum AppendOutcome
{
    /// <summary>Every entry is in the stream.</summary>
    Appended = 1,

    /// <summary>Redis holds another epoch: it restarted empty. Nothing was appended.</summary>
    EpochChanged = -1,

    /// <summary>The entries in <see cref="AppendResult.EntryIds"/> are in the stream; the next one lacks its predecessors
    /// in Redis (<see cref="AppendResult.LastSequence"/> is the node's last number there).</summary>
    SequenceMissing = -2,
}

/// <summary>The script's answer: per entry handled, in order, its new id (null: it was there already, from an earlier
/// attempt whose reply was lost); and the node's last sequence number in Redis.</summary>
internal sealed record AppendResult(AppendOutcome Outcome, long LastSequence, string?[] EntryIds);
