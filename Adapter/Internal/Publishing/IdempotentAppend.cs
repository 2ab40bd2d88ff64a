using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Where a retried XADD is made idempotent: every sequenced entry is appended by one Lua script that, in the same
/// atomic step as the XADD, compares the entry's sequence number with the last one Redis holds for its node.
/// <list type="bullet">
/// <item>a retry of an append that was applied but whose reply was lost finds its number already there, and is not
/// appended again;</item>
/// <item>an entry is appended only right after its predecessor, so retried batches never reorder;</item>
/// <item>a Redis whose epoch key differs restarted empty, and a Redis whose last number is behind lost this node's
/// latest entries (no persistence, or a replica promoted without them): both are reported to the publisher, which
/// repairs them from its replay window.</item>
/// </list>
/// </summary>
internal static class IdempotentAppend
{
    /// <summary>KEYS: stream, sequence hash, epoch. ARGV: epoch, node, sequence, force (1 = accept a jump over lost
    /// numbers), max length, then field/value pairs. Returns {1, id} appended, {0, last} already there, {-1, epoch}
    /// Redis holds another epoch, {-2, last} Redis lacks this node's earlier entries.</summary>
    private const string Script = """
        local e = redis.call('GET', KEYS[3])
        if e ~= ARGV[1] then return {-1, e or ''} end
        local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
        local seq = tonumber(ARGV[3])
        if seq <= last then return {0, last} end
        if seq ~= last + 1 and ARGV[4] ~= '1' then return {-2, last} end
        redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
        return {1, redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 6))}
        """;

    /// <summary>Appends one sequenced entry. With <paramref name="force"/>, the entry may jump over numbers Redis lost
    /// and that cannot be republished; it then carries the "sequence restarts" field.</summary>
    public static async Task<AppendResult> AppendAsync(
        IDatabase database, RedisStreamsKeys keys, string epoch, string node, long sequence, NameValueEntry[] fields, bool force, int maxLength)
    {
        var args = new RedisValue[5 + fields.Length * 2 + (force ? 2 : 0)];
        args[0] = epoch;
        args[1] = node;
        args[2] = sequence;
        args[3] = force ? 1 : 0;
        args[4] = maxLength;
        for (var i = 0; i < fields.Length; i++)
        {
            args[5 + i * 2] = fields[i].Name;
            args[6 + i * 2] = fields[i].Value;
        }
        if (force)
        {
            args[^2] = StreamEntryFormat.SequenceRestartField;
            args[^1] = "1";
        }
        var reply = (RedisResult[])(await database.ScriptEvaluateAsync(Script, [keys.Stream, keys.Sequences, keys.Epoch], args))!;
        var outcome = (AppendOutcome)(int)reply[0];
        return outcome switch
        {
            AppendOutcome.Appended => new AppendResult(outcome, reply[1].ToString(), 0),
            AppendOutcome.EpochChanged => new AppendResult(outcome, null, 0),
            AppendOutcome.AlreadyThere or AppendOutcome.SequenceMissing => new AppendResult(outcome, null, (long)reply[1]),
            _ => throw new InvalidDataException($"The append script answered an unknown code {(int)reply[0]}."),
        };
    }
}

internal enum AppendOutcome
{
    AlreadyThere = 0,
    Appended = 1,
    EpochChanged = -1,
    SequenceMissing = -2,
}

/// <summary>The script's answer: the new entry's id when appended; the node's last sequence number in Redis when the
/// entry was already there or its predecessors are missing.</summary>
internal readonly record struct AppendResult(AppendOutcome Outcome, string? EntryId, long LastSequence)
{
    /// <summary>The entry is in the stream (appended now, or by an earlier attempt whose reply was lost).</summary>
    public bool IsInStream => Outcome is AppendOutcome.Appended or AppendOutcome.AlreadyThere;
}
