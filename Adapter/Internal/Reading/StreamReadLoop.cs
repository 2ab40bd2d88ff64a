using System.Diagnostics;
using System.Globalization;
using StackExchange.Redis;
using RedisEntry = StackExchange.Redis.StreamEntry;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Reads the node's two streams, its own inbox and the shared stream, on the node's dedicated connection: one XREAD
/// of both without BLOCK, and a blocking XREAD of one entry to wait when there was nothing (at low traffic, at once:
/// <see cref="QuietGapMs"/>). Positions itself at a concrete id (<see cref="StartPosition"/>; the inbox of a fresh node from its
/// start), keeps a cursor per stream, resumes after the last id it processed after any error (with backoff) and from
/// the new streams' start after Redis restarted empty; decodes each entry (malformed ones are logged and skipped),
/// drops duplicates and reports gaps per stream and sender (<see cref="SequenceTracker"/>), measures lag, and hands
/// each new entry to the node, whose writes to connections are gathered per reply (<see cref="CoalescedWrites"/>) and
/// written when the reply is handled, or under load with the next replies' (<see cref="HeldWrites"/>). The two streams are merged by entry id: ids come from one clock for all the app's
/// streams, so entries are handled in the order Redis appended them, and a sender's packets keep their order whichever
/// stream each took.
/// </summary>
internal sealed class StreamReadLoop
{
    /// <summary>What the node does with a new (deduplicated) entry; writes to connections go through
    /// <paramref name="writes"/>, which the reader writes out once the whole XREAD reply is handled (under load, with the
    /// next replies': <see cref="HeldWrites"/>).</summary>
    public delegate Task EntryHandler(string id, StreamEntry entry, CoalescedWrites writes);

    private readonly NodeContext _node;
    private readonly RedisEpoch _epoch;
    private readonly Func<IDatabase> _readerDatabase;
    private readonly Func<IDatabase> _commandDatabase;
    private readonly EntryHandler _handle;
    private readonly Action<string> _senderHeard;
    private readonly Action _recovered;
    private readonly CancellationToken _stopping;
    private readonly SequenceTracker _sequences = new();
    private readonly SequenceTracker _inboxSequences = new();
    private readonly RedisKey _inbox;
    private readonly string _inboxName;
    private readonly StringCache _strings = new();
    private readonly HeldWrites _held;
    private int _replyPackets; // packets in the XREAD reply being handled
    private int _replyEntries; // entries in the XREAD reply being handled
    private long _lastEntryMs; // the id time (Redis's clock) of the last entry handled, 0 before the first

    // Whether the next read waits at once, without first looking for more (see QuietGapMs). Used by the loop only.
    private bool _quiet;

    /// <summary>A wait that brought one entry (of fewer than <see cref="HeldWrites.BusyReplyPackets"/> packets) at least
    /// this long (in entry ids, Redis's clock) after the one before means low traffic: the reader then waits for the next entry at once, instead of first reading without BLOCK,
    /// which would almost always find nothing (one XREAD round trip per entry and node saved at, say, 100 messages a
    /// second). Under load entries are well under a millisecond apart, and the reader reads without BLOCK as before.</summary>
    private const long QuietGapMs = 5;
    private RedisValue[] _pairs = new RedisValue[16];
    private readonly List<ReadOnlyMemory<byte>> _packets = [];
    private readonly TaskCompletionSource _positioned = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _firstAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private string _cursor = "";
    private string _inboxCursor = StartPosition.AfterEmptyRestart;
    private long _lastReadOk;
    private long _lastReadLagMs;
    private long _packetsBehind;
    private bool _rightsChecked;

    // Entries asked per XREAD: ReadCount, cut to a quarter after a read timed out (huge entries, a busy machine: the
    // same read would time out again and again, and the reader would never move on), doubled back after each read
    // that worked. Used by the loop only.
    private int _readCount;

    // The Redis epoch the reader positioned in, and the one it reads now (used by the loop only).
    private string? _positionedEpoch;
    private string? _readerEpoch;

    public StreamReadLoop(
        NodeContext node, RedisEpoch epoch, Func<IDatabase> readerDatabase, Func<IDatabase> commandDatabase,
        EntryHandler handle, Action<string> senderHeard, Action recovered, CancellationToken stopping)
    {
        _node = node;
        _epoch = epoch;
        _readerDatabase = readerDatabase;
        _commandDatabase = commandDatabase;
        _handle = handle;
        _senderHeard = senderHeard;
        _recovered = recovered;
        _stopping = stopping;
        _inbox = node.Keys.Inbox(node.NodeId);
        _inboxName = _inbox.ToString();
        _blockMs = (long)node.Options.ReadBlockTime.TotalMilliseconds;
        _inboxKey = _inbox;
        _streamKey = node.Keys.Stream;
        _held = new HeldWrites(new CoalescedWrites(node.Logger, node.Instruments.ConnectionWrites), TimeProvider.System);
    }

    /// <summary>Completes once the reader reads from a concrete position: from then on, whatever any node appends
    /// reaches this node.</summary>
    public Task Positioned => _positioned.Task;

    /// <summary>Completes once the reader is positioned, or its first attempt failed (Redis unreachable at start).</summary>
    public Task FirstAttempt => _firstAttempt.Task;

    public bool IsPositioned => _positioned.Task.IsCompleted;

    /// <summary>Time since the last XREAD completed (with or without entries).</summary>
    public TimeSpan SinceLastRead => Volatile.Read(ref _lastReadOk) == 0 ? TimeSpan.MaxValue : Stopwatch.GetElapsedTime(Volatile.Read(ref _lastReadOk));

    /// <summary>Age of the last entry processed when it was processed.</summary>
    public TimeSpan LastReadLag => TimeSpan.FromMilliseconds(Interlocked.Read(ref _lastReadLagMs));

    /// <summary>Packets appended to this node's two streams that it has not read yet, as last sampled.</summary>
    public long PacketsBehind => Interlocked.Read(ref _packetsBehind);

    public async Task RunAsync()
    {
        try
        {
            await ReadLoopAsync();
        }
        finally
        {
            // Stopping (or the rights are missing): what was read and held still goes out.
            await _held.FlushAsync();
        }
    }

    private async Task ReadLoopAsync()
    {
        var db = _readerDatabase();
        var attempt = 0;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                if (!_rightsChecked)
                {
                    // Before anything else: a user without the rights the backplane needs fails the start, clearly.
                    await PermissionCheck.RunAsync(_commandDatabase(), _node.Keys, _node.Options);
                    _rightsChecked = true;
                }
                if (_readerEpoch is null || attempt > 0)
                {
                    // First start, or after an error: is this still the Redis (and stream) we were reading?
                    var epoch = await _epoch.RefreshAsync(_stopping);
                    if (_readerEpoch is null)
                    {
                        _positionedEpoch = epoch;
                        _cursor = await StartPosition.ResolveAsync(_commandDatabase(), _node.Keys, _sequences);
                        Log.ReaderPositioned(_node.Logger, _node.NodeId, _node.Keys.StreamName, _cursor);
                        _positioned.TrySetResult();
                        _firstAttempt.TrySetResult();
                    }
                    else if (epoch != _readerEpoch)
                    {
                        // Restarted empty: the old ids mean nothing now.
                        _cursor = StartPosition.AfterEmptyRestart;
                        _inboxCursor = StartPosition.AfterEmptyRestart;
                    }
                    _readerEpoch = epoch;
                }

                // A read without BLOCK answers from one instant of both streams, which the merge by id needs. A blocked
                // XREAD that wakes up may answer with only the stream that woke it (Redis 7.0 does), though the other
                // got entries just after: so the blocking read asks for one entry, the earliest appended since it
                // began (whichever stream got it), which is safe to handle at once; the rest is read without BLOCK.
                if (_readCount == 0)
                {
                    _readCount = _node.Options.ReadCount;
                }
                var count = _readCount;
                // When the streams were quiet before the last entry (or the last wait timed out), the read that would
                // look for more right after it almost always finds nothing, so the reader waits at once. Should more
                // be there after all, the blocking read answers at once too, with the earliest of it.
                // The read without BLOCK goes through the client's typed XREAD, the blocking one (which the client does
                // not offer) as a raw command. The client takes any raw command as one that may have changed the
                // connection's database, and sends SELECT before the next command of a database: with the typed read
                // that is once per wait, not before every read.
                var moved = _node.Topology.Token; // taken before the read is sent: a move after it abandons the read
                var (inbox, shared) = _quiet ? default : Split(await _held.WhileReadingAsync(
                    TopologySignal.Abandonable(db.StreamReadAsync([new StreamPosition(_inbox, _inboxCursor), new StreamPosition(_node.Keys.Stream, _cursor)], count), moved),
                    _stopping));
                if (!_quiet)
                {
                    _node.Instruments.Reads.Add(1);
                }
                var blocked = inbox is null && shared is null;
                RedisResult[]? lone = null;
                var loneInInbox = false;
                if (blocked)
                {
                    // Nothing more to read now: what is held goes out before the reader waits.
                    await _held.FlushAsync();
                    count = 1;
                    moved = _node.Topology.Token;
                    var reply = await TopologySignal.Abandonable(db.ExecuteAsync("XREAD", BlockingRead()), moved);
                    _node.Instruments.Reads.Add(1);
                    if (!TryLone(reply, out lone, out loneInInbox))
                    {
                        (inbox, shared) = Split(reply);
                    }
                }
                var any = lone is not null || inbox is not null || shared is not null;
                _quiet = blocked && !any;
                if (attempt > 0)
                {
                    Log.ReadRecovered(_node.Logger, _node.Keys.StreamName, attempt, _cursor);
                    attempt = 0;
                    _recovered();
                }
                Volatile.Write(ref _lastReadOk, Stopwatch.GetTimestamp());
                if (any)
                {
                    var before = _lastEntryMs;
                    _replyEntries = 0;
                    _replyPackets = 0;
                    _held.BeginReply();
                    var handled = false;
                    try
                    {
                        await (lone is not null ? ProcessRawAsync(lone, loneInInbox) : ProcessAsync(inbox, shared, count));
                        handled = true;
                    }
                    finally
                    {
                        // What the reply's entries wrote to connections goes out now, each connection's at once, or
                        // with the next replies' when the node is busy.
                        await _held.EndReplyAsync(_replyPackets, handled);
                    }
                    // A lone entry, not busy, that a wait brought after a quiet spell in Redis's own clock (entry
                    // ids): low traffic; the next read waits at once.
                    _quiet = blocked && _replyEntries == 1 && _replyPackets < HeldWrites.BusyReplyPackets
                        && before > 0 && _lastEntryMs - before >= QuietGapMs;
                    if (count == _readCount && _readCount < _node.Options.ReadCount)
                    {
                        _readCount = Math.Min(_node.Options.ReadCount, _readCount * 2);
                    }
                }
            }
            catch (InvalidOperationException ex) when (PermissionCheck.IsMissingRights(ex))
            {
                // Retrying cannot help: the host's start fails with this (or, if it already started while Redis was
                // unreachable, the node stays unpositioned and unhealthy, and says why).
                Log.MissingRights(_node.Logger, ex);
                _firstAttempt.TrySetException(ex);
                return;
            }
            catch (Exception ex) when (!_stopping.IsCancellationRequested && ex is not OperationCanceledException)
            {
                // What was read before the failure goes out now, not after the retry.
                await _held.FlushAsync();
                _blockingArgs = null;
                // Whatever failed (Redis, or a reply of an unexpected shape), the loop keeps its cursor and goes on.
                attempt++;
                _firstAttempt.TrySetResult();
                _node.Instruments.ReadErrors.Add(1);
                if (ex is RedisTimeoutException && _readCount > 1)
                {
                    _readCount = Math.Max(1, _readCount / 4);
                    Log.ReadCountReduced(_node.Logger, _node.Keys.StreamName, _readCount);
                }
                var delay = Retry.Backoff(attempt);
                if (IsReplyStillArriving(ex) && db.Multiplexer.IsConnected)
                {
                    // The late reply is still coming down this connection, and a read sent now would wait behind it
                    // and time out in turn, again and again: let it arrive first (at most one more timeout). Not
                    // after a timeout with nothing received (Redis frozen, or no connection yet): no reply is coming.
                    delay = TimeSpan.FromMilliseconds(Math.Max(delay.TotalMilliseconds, db.Multiplexer.TimeoutMilliseconds));
                }
                Log.ReadFailed(_node.Logger, ex, _node.Keys.StreamName, _cursor, attempt, (int)delay.TotalMilliseconds);
                try
                {
                    await _node.Topology.DelayAsync(delay, _stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return; // stopping: the reader's connection was closed under the blocked XREAD
            }
        }
    }

    private static readonly object One = 1;

    // The blocking XREAD's fixed arguments, boxed once: its block time and the two streams' keys.
    private readonly object _blockMs;
    private readonly object _inboxKey;
    private readonly object _streamKey;

    // The blocking XREAD's argument array, reused from one wait to the next: only after a wait that was answered (the
    // loop's error handler drops it, as the client may still hold the array of a read that failed).
    private object[]? _blockingArgs;

    /// <summary>The arguments of the blocking XREAD (of one entry), with the cursors as they are now.</summary>
    private object[] BlockingRead()
    {
        var args = _blockingArgs ??= ["COUNT", One, "BLOCK", _blockMs, "STREAMS", _inboxKey, _streamKey, "", ""];
        args[7] = _inboxCursor;
        args[8] = _cursor;
        return args;
    }

    /// <summary>A timeout while the reply was arriving (bytes received, not all): StackExchange.Redis says so in its
    /// message ("Timeout awaiting response (..., inbound=3851KiB, ..."); anything else, or another wording, is not.</summary>
    private static bool IsReplyStillArriving(Exception ex)
        => ex is RedisTimeoutException
           && ex.Message.StartsWith("Timeout awaiting response", StringComparison.Ordinal)
           && ex.Message.Contains("inbound=", StringComparison.Ordinal)
           && !ex.Message.Contains("inbound=0KiB", StringComparison.Ordinal);

    /// <summary>The entries of each of the node's two streams in a typed XREAD reply (null: none).</summary>
    private (RedisEntry[]? Inbox, RedisEntry[]? Shared) Split(RedisStream[] streams)
    {
        RedisEntry[]? inbox = null;
        RedisEntry[]? shared = null;
        foreach (var stream in streams)
        {
            Take(stream.Key, stream.Entries, ref inbox, ref shared);
        }
        return (inbox, shared);
    }

    /// <summary>The same from a raw XREAD reply, <c>[[stream, [[id, [field, value, ...]], ...]], ...]</c> (only the
    /// streams that had entries; nil when none had).</summary>
    private (RedisEntry[]? Inbox, RedisEntry[]? Shared) Split(RedisResult reply)
    {
        RedisEntry[]? inbox = null;
        RedisEntry[]? shared = null;
        foreach (var stream in reply.IsNull ? [] : (RedisResult[])reply!)
        {
            var parts = (RedisResult[])stream!;
            var raw = (RedisResult[])parts[1]!;
            var entries = new RedisEntry[raw.Length];
            for (var e = 0; e < raw.Length; e++)
            {
                var pair = (RedisResult[])raw[e]!;
                var flat = (RedisResult[])pair[1]!;
                var values = new NameValueEntry[flat.Length / 2];
                for (var k = 0; k < values.Length; k++)
                {
                    values[k] = new NameValueEntry((RedisValue)flat[2 * k], (RedisValue)flat[2 * k + 1]);
                }
                entries[e] = new RedisEntry((RedisValue)pair[0], values);
            }
            Take((RedisKey)parts[0], entries, ref inbox, ref shared);
        }
        return (inbox, shared);
    }

    private void Take(RedisKey stream, RedisEntry[] entries, ref RedisEntry[]? inbox, ref RedisEntry[]? shared)
    {
        if (entries.Length > 0)
        {
            if (stream == _inbox)
            {
                inbox = entries;
            }
            else
            {
                shared = entries;
            }
        }
    }

    /// <summary>A raw XREAD reply of one entry (what a wait brings, nearly always): <c>[[stream, [[id, [field, value,
    /// ...]]]]]</c>, handled as it is rather than first turned into the typed read's shape.</summary>
    private bool TryLone(RedisResult reply, out RedisResult[]? entry, out bool inInbox)
    {
        entry = null;
        inInbox = false;
        if (reply.IsNull || (RedisResult[])reply! is not [var stream])
        {
            return false;
        }
        var parts = (RedisResult[])stream!;
        if ((RedisResult[])parts[1]! is not [var only])
        {
            return false;
        }
        entry = (RedisResult[])only!;
        inInbox = (RedisKey)parts[0] == _inbox;
        return true;
    }

    /// <summary>Handles an XREAD reply asked with COUNT <paramref name="count"/> (a stream that returned that many
    /// entries may have more).</summary>
    private async Task ProcessAsync(RedisEntry[]? inbox, RedisEntry[]? shared, int count)
    {
        if (inbox is null || shared is null)
        {
            foreach (var raw in (inbox ?? shared ?? []))
            {
                await ProcessRawAsync(raw, inbox is not null);
            }
            return;
        }

        // Both streams had entries: merge them by id, which orders entries across streams (one clock gives them all).
        // A list that came back full may go on past its last id; entries of the other list after that id wait for the
        // next read (their stream's cursor stays before them).
        var cut = StreamId.Max;
        if (inbox.Length >= count)
        {
            cut = IdOf(inbox[^1]);
        }
        if (shared.Length >= count && IdOf(shared[^1]) is var sharedLast && sharedLast.CompareTo(cut) < 0)
        {
            cut = sharedLast;
        }
        var i = 0;
        var j = 0;
        var nextInbox = IdOf(inbox[0]);
        var nextShared = IdOf(shared[0]);
        while (i < inbox.Length || j < shared.Length)
        {
            // A list that is done has Max as its next id, so the other one is taken.
            var fromInbox = nextInbox.CompareTo(nextShared) < 0;
            if ((fromInbox ? nextInbox : nextShared).CompareTo(cut) > 0)
            {
                return;
            }
            if (fromInbox)
            {
                await ProcessRawAsync(inbox[i++], inbox: true);
                nextInbox = i < inbox.Length ? IdOf(inbox[i]) : StreamId.Max;
            }
            else
            {
                await ProcessRawAsync(shared[j++], inbox: false);
                nextShared = j < shared.Length ? IdOf(shared[j]) : StreamId.Max;
            }
        }
    }

    private static StreamId IdOf(RedisEntry entry) => StreamId.Parse(entry.Id.ToString());

    private Task ProcessRawAsync(RedisEntry raw, bool inbox)
    {
        var id = Advance(raw.Id.ToString(), inbox);
        var values = raw.Values;
        var pairs = Pairs(values.Length * 2);
        for (var k = 0; k < values.Length; k++)
        {
            pairs[2 * k] = values[k].Name;
            pairs[2 * k + 1] = values[k].Value;
        }
        return ProcessEntryAsync(id, values.Length * 2, inbox ? _inboxSequences : _sequences, inbox);
    }

    /// <summary>The same for an entry of a raw reply, <c>[id, [field, value, ...]]</c>.</summary>
    private Task ProcessRawAsync(RedisResult[] raw, bool inbox)
    {
        var id = Advance(raw[0].ToString(), inbox);
        var flat = (RedisResult[])raw[1]!;
        var pairs = Pairs(flat.Length);
        for (var k = 0; k < flat.Length; k++)
        {
            pairs[k] = (RedisValue)flat[k];
        }
        return ProcessEntryAsync(id, flat.Length, inbox ? _inboxSequences : _sequences, inbox);
    }

    /// <summary>Moves the stream's cursor to the entry <paramref name="id"/> about to be handled.</summary>
    private string Advance(string id, bool inbox)
    {
        if (inbox)
        {
            _inboxCursor = id;
        }
        else
        {
            _cursor = id;
        }
        _node.Instruments.Received.Add(1);
        return id;
    }

    private RedisValue[] Pairs(int length)
    {
        if (_pairs.Length < length)
        {
            _pairs = new RedisValue[length];
        }
        return _pairs;
    }

    private async Task ProcessEntryAsync(string id, int pairCount, SequenceTracker sequences, bool inbox)
    {
        var stream = inbox ? _inboxName : _node.Keys.StreamName;
        bool sequenceRestarts;
        try
        {
            (var value, sequenceRestarts) = StreamEntryFormat.ReadFields(_pairs.AsSpan(0, pairCount));
            StreamEntryFormat.SplitPackets(value, _packets);
        }
        catch (InvalidDataException ex)
        {
            _node.Instruments.Malformed.Add(1);
            Log.MalformedEntry(_node.Logger, id, stream, ex.Message);
            return;
        }

        var parsed = StreamId.TryParse(id, out var entryId);
        _replyEntries++;
        if (parsed)
        {
            RecordLag(entryId);
            _lastEntryMs = Math.Max(_lastEntryMs, entryId.Milliseconds);
        }
        var positions = parsed && _node.Options.ConnectionStateRecovery;
        string? heard = null;
        _replyPackets += _packets.Count;
        for (var p = 0; p < _packets.Count; p++)
        {
            StreamEntry entry;
            try
            {
                entry = StreamEntryFormat.DecodePacket(_packets[p], _strings);
            }
            catch (InvalidDataException ex)
            {
                _node.Instruments.Malformed.Add(1);
                Log.MalformedEntry(_node.Logger, _packets.Count == 1 ? id : id + "#" + p.ToString(CultureInfo.InvariantCulture), stream, ex.Message);
                continue;
            }
            entry.SequenceRestarts = sequenceRestarts && p == 0;
            if (positions)
            {
                entry.Position = new DeliveryPosition(entryId, p);
            }
            if (p > 0)
            {
                _node.Instruments.Received.Add(1);
            }

            if (entry.Sequence > sequences.Last(entry.Node) + 1 && await IsForgedAsync(id, stream, entry, inbox))
            {
                continue;
            }

            if (!ReferenceEquals(entry.Node, heard))
            {
                // Once per entry (its packets share one sender, whose id the string cache gives as one instance).
                _senderHeard(entry.Node);
                heard = entry.Node;
            }
            if (entry.Sequence > 0)
            {
                // A sender's numbering that restarts after Redis lost its entries is no gap for a reader that was not
                // there when they were appended: one positioned since (in this epoch) and that never read the sender.
                // A reader that has read through an empty restart was there, and reports what it never got.
                var restartUnseen = entry.SequenceRestarts && _readerEpoch == _positionedEpoch;
                if (!sequences.Accept(entry.Node, entry.Sequence, restartUnseen, out var missing))
                {
                    _node.Instruments.Duplicates.Add(1);
                    continue;
                }
                if (missing > 0)
                {
                    _node.Instruments.Gaps.Add(missing);
                    Log.GapDetected(_node.Logger, missing, entry.Node, stream, entry.Sequence - missing - 1, entry.Sequence);
                }
            }
            await _handle(id, entry, _held.Writes);
        }
        // Once per entry: a position inside a batch counts as processed when the whole entry is.
        if (positions && _packets.Count > 0)
        {
            MarkProcessed(new DeliveryPosition(entryId, _packets.Count - 1));
        }
    }

    // ------------------------------------------------------------------ positions (connection-state recovery)

    private readonly Lock _processedLock = new();
    private DeliveryPosition _processed;
    private List<(DeliveryPosition Target, TaskCompletionSource Done)>? _waiters;

    /// <summary>Every packet up to this position has been handled (or skipped) by this node (ids of the Redis it reads
    /// now). Only kept with connection-state recovery on.</summary>
    public DeliveryPosition Processed
    {
        get
        {
            lock (_processedLock)
            {
                return _processed;
            }
        }
    }

    private void MarkProcessed(DeliveryPosition position)
    {
        lock (_processedLock)
        {
            _processed = position; // in order within one Redis; lower again after Redis restarted empty

            if (_waiters is { Count: > 0 } waiters)
            {
                for (var i = waiters.Count - 1; i >= 0; i--)
                {
                    if (waiters[i].Target <= position)
                    {
                        waiters[i].Done.TrySetResult();
                        waiters.RemoveAt(i);
                    }
                }
            }
        }
    }

    /// <summary>Completes once this node has handled every packet up to <paramref name="target"/> (a position another
    /// node already delivered), or throws <see cref="TimeoutException"/> after <paramref name="timeout"/>.</summary>
    public Task WhenProcessedAsync(DeliveryPosition target, TimeSpan timeout, CancellationToken cancellationToken)
    {
        TaskCompletionSource done;
        lock (_processedLock)
        {
            if (target <= _processed)
            {
                return Task.CompletedTask;
            }
            done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            (_waiters ??= []).Add((target, done));
        }
        return done.Task.WaitAsync(timeout, cancellationToken);
    }

    /// <summary>An entry that skips sequence numbers of its sender is either a gap (trimming, data lost by Redis) or
    /// was written by something other than the backplane's append script, which records every number it gives a
    /// sender in the stream's sequence hash in the same atomic step. A number above the one recorded there was never
    /// given: accepting it would make this node drop that sender's real packets up to it as duplicates. Checked only
    /// when numbers are skipped (rare), and not at all when Redis cannot be asked.</summary>
    private async Task<bool> IsForgedAsync(string id, string stream, StreamEntry entry, bool inbox)
    {
        long known;
        try
        {
            var key = inbox ? _node.Keys.InboxSequences(_node.NodeId) : _node.Keys.Sequences;
            known = (long?)await _commandDatabase().HashGetAsync(key, entry.Node) ?? 0;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or InvalidCastException)
        {
            return false;
        }

        if (entry.Sequence <= known)
        {
            return false;
        }

        _node.Instruments.Forged.Add(1);
        Log.ForgedEntry(_node.Logger, id, stream, entry.Sequence, entry.Node, known);
        return true;
    }

    private void RecordLag(StreamId id)
    {
        var lag = Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - id.Milliseconds);
        Interlocked.Exchange(ref _lastReadLagMs, lag);
        _node.Instruments.ReadLag.Record(lag);
    }

    /// <summary>Counts the packets appended to this node's two streams that it has not read yet, for the lag gauge;
    /// called with each heartbeat. Per sender, the last number Redis gave it (the sequence hashes, a few fields) minus
    /// the last this node read: no entry is touched, in Redis or on the wire, however large entries are (counting
    /// entries after the cursor in Lua would copy each into the script, which for a 64 MiB entry blocks Redis for
    /// seconds).</summary>
    public async Task SamplePacketsBehindAsync()
    {
        var db = _commandDatabase();
        var shared = db.HashGetAllAsync(_node.Keys.Sequences);
        var inbox = db.HashGetAllAsync(_node.Keys.InboxSequences(_node.NodeId));
        var behind = Behind(await shared, _sequences) + Behind(await inbox, _inboxSequences);
        Interlocked.Exchange(ref _packetsBehind, behind);
    }

    private static long Behind(HashEntry[] appended, SequenceTracker read)
    {
        long behind = 0;
        foreach (var sender in appended)
        {
            if (sender.Value.TryParse(out long last))
            {
                // A sender whose numbering restarted lower (Redis restarted empty) counts 0 until it passes what was read.
                behind += Math.Max(0, last - read.Last(sender.Name!));
            }
        }
        return behind;
    }
}
