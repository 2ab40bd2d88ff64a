using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Where a retried XADD is made idempotent: entries are appended by one Lua script, several per call, which in the same
/// atomic step as each XADD compares the entry's sequence numbers with the last one Redis holds for its node on its
/// channel. An entry carries one packet or a batch of consecutive ones (see <see cref="StreamEntryFormat"/>). A channel
/// is where an entry goes: the shared stream, or the inbox stream of the one node it is addressed to; each has its own numbering per sender, so that a reader of one channel sees every sender's numbers
/// without holes.
/// <list type="bullet">
/// <item>a retry of an append that was applied but whose reply was lost finds its number already there, and is not
/// appended again;</item>
/// <item>an entry is appended only right after its predecessor, so retried batches never reorder;</item>
/// <item>a Redis whose epoch key differs restarted empty, and a Redis whose last number is behind lost this node's
/// latest entries (no persistence, or a replica promoted without them): both are reported to the publisher, which
/// repairs them from its replay window.</item>
/// </list>
/// Every append takes its id from one clock (<see cref="RedisStreamsKeys.Clock"/>), so that ids are ordered across
/// the shared stream and every inbox: a node merges its two streams back into the order of the appends, and every
/// packet from one sender reaches a connection in send order, whichever channels they took.
/// One call per batch (not per entry) keeps the cost per packet low for both Redis and this node.
/// </summary>
internal static class IdempotentAppend
{
    /// <summary>Lua shared by both scripts: the clock (<see cref="RedisStreamsKeys.Clock"/>) and an XADD with the next
    /// id from it. The clock moves with Redis's time, never backwards; should an id not be above a stream's last one
    /// (the clock key was evicted, or someone added with <c>*</c>), the clock jumps past that stream's last id and the
    /// append is made with the next one.</summary>
    private const string ClockLua = """
        local clock_ms, clock_seq, clock_prefix = 0, -1, '0-'
        local clock_moved = false
        local function clock_set(ms, seq)
          clock_ms, clock_seq = ms, seq
          clock_prefix = string.format('%.0f', ms) .. '-'
        end
        local function clock_read(key)
          local ms, seq = 0, -1
          local last = redis.call('GET', key)
          if last then
            local a, b = string.match(last, '^(%d+)-(%d+)$')
            if a then ms, seq = tonumber(a), tonumber(b) end
          end
          local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          if now > ms then ms, seq = now, -1 end
          clock_set(ms, seq)
        end
        local function xadd(stream, value, restart)
          clock_seq = clock_seq + 1
          clock_moved = true
          local id = clock_prefix .. clock_seq
          local r
          if restart then r = redis.pcall('XADD', stream, id, 'e', value, 'r', '1') else r = redis.pcall('XADD', stream, id, 'e', value) end
          if type(r) == 'table' and r.err then
            local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
            if #top == 0 then return redis.error_reply(r.err) end
            local a, b = string.match(top[1][1], '^(%d+)-(%d+)$')
            a, b = tonumber(a), tonumber(b)
            if a > clock_ms or (a == clock_ms and b > clock_seq) then clock_set(a, b) end
            clock_seq = clock_seq + 1
            id = clock_prefix .. clock_seq
            if restart then redis.call('XADD', stream, id, 'e', value, 'r', '1') else redis.call('XADD', stream, id, 'e', value) end
          end
          return id
        end
        local function clock_save(key)
          if clock_moved then redis.call('SET', key, clock_prefix .. clock_seq) end
        end

        """;

    /// <summary>KEYS: epoch, clock, then per channel its stream and its sequence hash; channel 1 is always the shared
    /// stream, the others are node inboxes; last, the totals hash. ARGV: epoch, node, max length, inbox lifetime in ms, 1 to get the new ids
    /// back (else only how many entries were handled), entry count, then per entry: its channel, the sequence numbers
    /// of its first and last packet, force (1 = may jump over numbers Redis lost), its value (one packet or a batch);
    /// then the node's total it last saw (0: no check), and last, 1 when that total must be exactly Redis's (an append
    /// sent while the one before it is still unanswered: <see cref="AppendOutcome.NotAfterPrevious"/>). Returns
    /// {-3, total, 0, total} when Redis holds a lower total, {-4, total, 0, total} when an exact total differs (nothing
    /// appended in either case); every other answer but {-1, ...} carries the node's total after the call as a 4th element.
    /// Returns {1, 0, handled} all in their streams; {-2, last, handled} the entry after those handled lacks its
    /// predecessors (last = its channel's last number in Redis); {-1, epoch, 0} Redis holds another epoch. handled is
    /// the number of entries handled, or when asked, one element per entry handled, in order: its new id, or '' when it
    /// was already there. Each stream written to is trimmed once (MAXLEN ~) at the end, and every inbox written to
    /// (stream and sequence hash) gets the inbox lifetime again, so the inbox of a node that died without a goodbye
    /// goes away.</summary>
    private const string Script = ClockLua + """
        local e = redis.call('GET', KEYS[1])
        if e ~= ARGV[1] then return {-1, e or '', 0} end
        local node = ARGV[2]
        local want_ids = ARGV[5] == '1'
        local tkey = KEYS[#KEYS]
        local total = tonumber(redis.call('HGET', tkey, node) or '0')
        local total_start = total
        local expected = tonumber(ARGV[#ARGV - 1])
        if ARGV[#ARGV] == '1' then
          if total ~= expected then
            if want_ids then return {-4, total, {}, total} end
            return {-4, total, 0, total}
          end
        elseif total < expected then
          if want_ids then return {-3, total, {}, total} end
          return {-3, total, 0, total}
        end
        clock_read(KEYS[2])
        local ttl = tonumber(ARGV[4])
        local last = {}
        local start = {}
        local written = {}
        local function flush()
          clock_save(KEYS[2])
          for c, l in pairs(last) do
            if l ~= start[c] then
              redis.call('HSET', KEYS[c * 2 + 2], node, l)
              total = total + l - start[c]
            end
            if written[c] then redis.call('XTRIM', KEYS[c * 2 + 1], 'MAXLEN', '~', ARGV[3]) end
            if c > 1 and ttl > 0 then
              redis.call('PEXPIRE', KEYS[c * 2 + 1], ttl)
              redis.call('PEXPIRE', KEYS[c * 2 + 2], ttl)
            end
          end
          if total ~= total_start then redis.call('HSET', tkey, node, total) end
        end
        local ids = {}
        local handled = 0
        local i = 7
        for k = 1, tonumber(ARGV[6]) do
          local c = tonumber(ARGV[i])
          local first = tonumber(ARGV[i + 1])
          local final = tonumber(ARGV[i + 2])
          local force = ARGV[i + 3] == '1'
          local l = last[c]
          if l == nil then
            l = tonumber(redis.call('HGET', KEYS[c * 2 + 2], node) or '0')
            start[c] = l
            last[c] = l
          end
          if final <= l then
            if want_ids then ids[k] = '' end
          elseif first ~= l + 1 and not force then
            flush()
            if want_ids then return {-2, l, ids, total} end
            return {-2, l, handled, total}
          else
            local id = xadd(KEYS[c * 2 + 1], ARGV[i + 4], force)
            if want_ids then ids[k] = id end
            last[c] = final
            written[c] = true
          end
          handled = k
          i = i + 5
        end
        flush()
        if want_ids then return {1, 0, ids, total} end
        return {1, 0, handled, total}
        """;

    /// <summary>KEYS: clock, stream. ARGV: max length, the packet. Returns the new id.</summary>
    private const string UnsequencedScript = ClockLua + """
        clock_read(KEYS[1])
        local id = xadd(KEYS[2], ARGV[2], false)
        clock_save(KEYS[1])
        redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', ARGV[1])
        return id
        """;

    /// <summary>Appends an entry that carries no sequence number (a heartbeat, a goodbye) to the shared stream, with an
    /// id from the clock like every other entry.</summary>
    public static async Task AppendUnsequencedAsync(IDatabase database, RedisStreamsKeys keys, byte[] packet, int maxLength)
        => await database.ScriptEvaluateAsync(UnsequencedScript, [keys.Clock, keys.Stream], [maxLength, packet]);

    /// <summary>Appends <paramref name="entries"/> in order, each only after its predecessor on its channel. A forced
    /// entry may jump over numbers Redis lost and cannot get back; it then carries the "sequence restarts" field.</summary>
    /// <remarks>With <paramref name="wantIds"/> false only how many entries were handled comes back, not each new
    /// entry's id (those are for traces). With <paramref name="exact"/>, nothing is appended unless the node's total in
    /// Redis is exactly <paramref name="expectedTotal"/> (<see cref="AppendOutcome.NotAfterPrevious"/>).
    /// When <paramref name="abandon"/> is cancelled before the answer (a Redis Cluster slot moved:
    /// <see cref="TopologySignal"/>), the call throws <see cref="SlotMovedException"/>; its arguments stay with the
    /// client.</remarks>
    public static async Task<AppendResult> AppendAsync(
        IDatabase database, RedisStreamsKeys keys, string epoch, string node, IReadOnlyList<PendingAppend> entries, int maxLength,
        bool wantIds = true, long expectedTotal = 0, bool exact = false, CancellationToken abandon = default)
    {
        // Channel 1 is the shared stream; each inbox in the batch gets the next number, in order of first use.
        List<string>? inboxes = null;
        for (var e = 0; e < entries.Count; e++)
        {
            var channel = entries[e].Channel;
            if (channel.Length > 0 && !(inboxes ??= []).Contains(channel))
            {
                inboxes.Add(channel);
            }
        }
        var inboxCount = inboxes?.Count ?? 0;
        RedisKey[] keyList;
        if (inboxCount == 0)
        {
            // A batch for the shared stream only names the same keys every time (never written to once built).
            keyList = keys.SharedAppendKeys;
        }
        else
        {
            keyList = new RedisKey[5 + inboxCount * 2];
            keyList[0] = keys.Epoch;
            keyList[1] = keys.Clock;
            keyList[2] = keys.Stream;
            keyList[3] = keys.Sequences;
            for (var c = 0; c < inboxCount; c++)
            {
                keyList[4 + c * 2] = keys.Inbox(inboxes![c]);
                keyList[5 + c * 2] = keys.InboxSequences(inboxes[c]);
            }
            keyList[^1] = keys.Totals;
        }

        var args = RentArgs(8 + entries.Count * 5);
        args[0] = epoch;
        args[1] = node;
        args[2] = maxLength;
        args[3] = (long)RedisStreamsKeys.InboxLifetime.TotalMilliseconds;
        args[4] = wantIds ? 1 : 0;
        args[5] = entries.Count;
        var i = 6;
        for (var e = 0; e < entries.Count; e++)
        {
            var entry = entries[e];
            args[i++] = entry.Channel.Length == 0 ? 1 : 2 + inboxes!.IndexOf(entry.Channel);
            args[i++] = entry.FirstSequence;
            args[i++] = entry.LastSequence;
            args[i++] = entry.Force ? 1 : 0;
            args[i++] = entry.Value;
        }
        args[i++] = expectedTotal;
        args[i] = exact ? 1 : 0;

        var reply = (RedisResult[])(await TopologySignal.Abandonable(database.ScriptEvaluateAsync(Script, keyList, args), abandon))!;
        ReturnArgs(args);
        var outcome = (AppendOutcome)(int)reply[0];
        if (outcome == AppendOutcome.EpochChanged)
        {
            return new AppendResult(outcome, 0, 0, []);
        }
        var total = (long)reply[3];
        if (outcome is AppendOutcome.BehindElsewhere or AppendOutcome.NotAfterPrevious)
        {
            return new AppendResult(outcome, 0, 0, [], total);
        }
        if (outcome is not (AppendOutcome.Appended or AppendOutcome.SequenceMissing))
        {
            throw new InvalidDataException($"The append script answered an unknown code {(int)reply[0]}.");
        }
        if (!wantIds)
        {
            return new AppendResult(outcome, (long)reply[1], (int)reply[2], null, total);
        }
        var handled = (RedisResult[])reply[2]!;
        var ids = new string?[handled.Length];
        for (var k = 0; k < handled.Length; k++)
        {
            var id = (string?)handled[k];
            ids[k] = string.IsNullOrEmpty(id) ? null : id;
        }
        return new AppendResult(outcome, (long)reply[1], ids.Length, ids, total);
    }

    /// <summary>Batches of up to this many entries get their argument array from <see cref="FreeArgs"/>.</summary>
    private const int PooledEntries = 16;

    /// <summary>Argument arrays of append calls that were answered, one kept per length (a batch of n entries has 8 +
    /// 5n arguments), cleared, so that a node appending at a steady pace does not build a new one for every call. An
    /// array goes back only after its call was answered: after a failure the client may still hold it.</summary>
    private static readonly RedisValue[]?[] FreeArgs = new RedisValue[]?[8 + PooledEntries * 5 + 1];

    private static RedisValue[] RentArgs(int length)
        => length < FreeArgs.Length && Interlocked.Exchange(ref FreeArgs[length], null) is { } free ? free : new RedisValue[length];

    private static void ReturnArgs(RedisValue[] args)
    {
        if (args.Length < FreeArgs.Length)
        {
            Array.Clear(args); // no packet kept alive by an array that waits here
            Volatile.Write(ref FreeArgs[args.Length], args);
        }
    }
}

/// <summary>One entry to append: the sequence numbers (on its channel) of its first and last packet, its value (one
/// packet, or a batch of consecutive ones), whether it may jump over lost numbers, and its channel: "" for the shared
/// stream, else the id of the node whose inbox it goes to.</summary>
internal readonly record struct PendingAppend(long FirstSequence, long LastSequence, byte[] Value, bool Force, string Channel = "");

internal enum AppendOutcome
{
    /// <summary>Every entry is in the stream.</summary>
    Appended = 1,

    /// <summary>Redis holds another epoch: it restarted empty. Nothing was appended.</summary>
    EpochChanged = -1,

    /// <summary>The first <see cref="AppendResult.Handled"/> entries are in their streams; the next one lacks its
    /// predecessors in Redis (<see cref="AppendResult.LastSequence"/> is the node's last number on that entry's channel).</summary>
    SequenceMissing = -2,

    /// <summary>Redis holds a lower total for this node (<see cref="AppendResult.Total"/>) than it answered before: it
    /// lost some of this node's latest entries, on some channel (a replica promoted without them). Nothing was
    /// appended: the node repairs every channel first, so that no later packet overtakes a lost one.</summary>
    BehindElsewhere = -3,

    /// <summary>The append was sent before the one ahead of it was answered, with the total Redis would hold had that
    /// one been applied in full (<see cref="AppendResult.Total"/> is what it holds): it was not (it stopped short,
    /// failed, or never ran), so nothing was appended, and the publisher sends this batch again once it has dealt with
    /// the one ahead.</summary>
    NotAfterPrevious = -4,
}

/// <summary>The script's answer: how many entries were handled (appended, or there already from an earlier attempt
/// whose reply was lost), in order from the first; when asked, per entry handled its new id (null: it was there
/// already); and, when an entry lacks its predecessors, the node's last sequence number on that entry's channel in
/// Redis.</summary>
/// <remarks><see cref="Total"/>: the sum of this node's last numbers over every channel of the stream, kept in Redis
/// (<see cref="RedisStreamsKeys.Totals"/>) by the same script; an append that passes the total it last saw is refused
/// (<see cref="AppendOutcome.BehindElsewhere"/>) when Redis holds less.</remarks>
internal sealed record AppendResult(AppendOutcome Outcome, long LastSequence, int Handled, string?[]? EntryIds, long Total = 0);
