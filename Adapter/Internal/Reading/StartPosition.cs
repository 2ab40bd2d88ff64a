using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Where the reader starts: after the stream's last entry at the moment it positions itself, a concrete id and never
/// <c>$</c> (which, re-issued after a timeout or an error, would skip what was appended in between). The same atomic
/// script reads every sender's last sequence number, the baseline of gap detection, so that a hole is noticed even in
/// the first entry read from a sender. After Redis restarted empty, the reader starts again at the new stream's
/// beginning (<see cref="AfterEmptyRestart"/>).
/// </summary>
internal static class StartPosition
{
    /// <summary>The id to read after when the stream was recreated by an empty Redis: all of it.</summary>
    public const string AfterEmptyRestart = "0-0";

    /// <summary>KEYS: stream, sequence hash. Returns {last entry id or '0-0', [node, sequence, ...]}.</summary>
    private const string Script = """
        local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
        local id = '0-0'
        if #last > 0 then id = last[1][1] end
        return {id, redis.call('HGETALL', KEYS[2])}
        """;

    /// <summary>Resolves the id to read after, and seeds <paramref name="sequences"/> with every sender's last number.</summary>
    public static async Task<string> ResolveAsync(IDatabase database, RedisStreamsKeys keys, SequenceTracker sequences)
    {
        var result = (RedisResult[])(await database.ScriptEvaluateAsync(Script, [keys.Stream, keys.Sequences]))!;
        var senders = (RedisResult[])result[1]!;
        for (var i = 0; i + 1 < senders.Length; i += 2)
        {
            sequences.SetBaseline((string)senders[i]!, (long)senders[i + 1]);
        }
        return (string)result[0]!;
    }
}
