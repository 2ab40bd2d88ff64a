using System.Diagnostics;
using System.Threading.Channels;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Appends this node's packets, in order: a send waits in the <see cref="Outbox"/> (at most <c>PublishTimeout</c>), the
/// publish loop takes batches, routes each packet to its channel, appends them with <see cref="IdempotentAppend"/>,
/// retries with backoff while Redis is away, and keeps what Redis confirmed in the <see cref="ReplayWindow"/> to repair
/// a Redis that lost it. Under load the next batch's append is sent before the answer to the one in flight, on the
/// condition that the one in flight went in whole (<see cref="SendAheadAsync"/>).
/// <para>Channels: a packet addressed to one node (a group change, an ack, a client-result invocation or answer) goes
/// to that node's inbox stream; a send to connections goes to the inbox of the node that holds them (found in the
/// <see cref="ConnectionRegistry"/>, one lookup per batch for the owners not cached yet; a send to connections of
/// several nodes becomes one entry per node); everything else (all, groups, users, and a send to a connection no live
/// node is known to hold) goes to the shared stream, which every node reads. Each channel has its own numbering.</para>
/// </summary>
internal sealed class StreamPublisher
{
    /// <summary>Most entries per append call. Measured with the cells benchmark (3 servers): 256 instead of 64 raised
    /// direct sends from 0.25x to 0.33x of Microsoft's and the publish path from 0.44x to 0.5x.</summary>
    private const int MaxBatch = 256;

    /// <summary>Most packets in one stream entry (a batch of consecutive packets to one channel)...</summary>
    private const int MaxPacketsPerEntry = 64;

    /// <summary>... and about the most bytes: a packet that would take an entry past it starts the next one (so an
    /// XREAD of ReadCount entries stays within a few MB).</summary>
    private const int MaxBytesPerEntry = 64 * 1024;

    private readonly NodeContext _node;
    private readonly RedisEpoch _epoch;
    private readonly Func<IDatabase> _database;
    private readonly ConnectionRegistry _registry;
    private readonly Task _readerPositioned;
    private readonly CancellationToken _stopping;
    private readonly Outbox _outbox;
    private readonly ReplayWindow _window;

    /// <summary>The packets of one batch are encoded one after the other into one buffer, kept from batch to batch
    /// unless a batch made it larger than this.</summary>
    private const int ArenaKept = 1024 * 1024;

    // Used by the publish loop only. Two batches' states: the batch being confirmed, and the one sent ahead of its
    // answer (see SendAheadAsync); _b is the one the routing and result code works on.
    private readonly BatchState[] _states = [new(), new()];
    private BatchState _b;
    private Ahead? _ahead;
    private readonly StreamEntryFormat.PayloadWriter _batch = new();
    private readonly Dictionary<string, long> _numbered = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _confirmed = new(StringComparer.Ordinal);
    private readonly HashSet<string> _forceNext = new(StringComparer.Ordinal);
    private readonly List<string> _unknownOwners = [];
    private int _checkChannels;
    private long _expectedTotal; // this node's total in Redis as last answered (0: no check); see AppendOutcome.BehindElsewhere

    // The epoch of the Redis that holds what _confirmed counts (null before the first append). Used by the publish loop
    // only: an append in another epoch first repairs every channel, whoever noticed the restart first.
    private string? _confirmedEpoch;

    public StreamPublisher(
        NodeContext node, RedisEpoch epoch, Func<IDatabase> database, ConnectionRegistry registry, Task readerPositioned, CancellationToken stopping)
    {
        _node = node;
        _epoch = epoch;
        _database = database;
        _registry = registry;
        _readerPositioned = readerPositioned;
        _stopping = stopping;
        _outbox = new Outbox(node.Options.OutboxCapacity, node.Options.PublishTimeout, Expired);
        _b = _states[0];
        _window = new ReplayWindow(node.Options.ReplayWindow, node.Options.MaxLength);
    }

    public int OutboxDepth => _outbox.Depth;

    public int ReplayWindowCount => _window.Count;

    /// <summary>Appends sent ahead of the answer to the one before them, and how many of those Redis refused because
    /// the one before did not go in whole (for tests and diagnostics).</summary>
    internal long SentAhead => Interlocked.Read(ref _sentAhead);

    /// <inheritdoc cref="SentAhead"/>
    internal long AheadRefused => Interlocked.Read(ref _aheadRefused);

    private long _sentAhead;
    private long _aheadRefused;

    /// <summary>Appends a sequenced entry through the outbox and returns when it is in the stream. Throws
    /// <see cref="RedisStreamsPublishException"/> when it could not be handed to Redis within PublishTimeout, or the
    /// node is shutting down.</summary>
    public Task PublishAsync(StreamEntry entry, CancellationToken cancellationToken)
    {
        // The common case (not traced, no token, room in the outbox): the send's task is the packet's own, with no
        // async frame around it.
        if (!cancellationToken.CanBeCanceled && !BackplaneInstruments.Source.HasListeners())
        {
            var plain = new OutboxItem(entry, activity: null);
            if (_outbox.TryAdd(plain))
            {
                return plain.Completion;
            }
            return PublishCoreAsync(entry, plain, cancellationToken);
        }
        return PublishCoreAsync(entry, item: null, cancellationToken);
    }

    private async Task PublishCoreAsync(StreamEntry entry, OutboxItem? item, CancellationToken cancellationToken)
    {
        var activity = item is not null || !BackplaneInstruments.Source.HasListeners()
            ? null
            : BackplaneInstruments.Source.StartActivity("publish " + _node.Keys.StreamName, ActivityKind.Producer);
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "redis");
            activity.SetTag("messaging.destination.name", _node.Keys.StreamName);
            activity.SetTag("messaging.operation.type", "send");
            activity.SetTag("messaging.operation.name", "XADD");
            activity.SetTag("signalr.hub", entry.Hub);
            activity.SetTag("signalr.redis_streams.kind", entry.Kind.ToString());
            activity.SetTag("signalr.redis_streams.node", _node.NodeId);
            entry.TraceParent = activity.Id;
        }

        item ??= new OutboxItem(entry, activity);
        try
        {
            if (!_outbox.TryAdd(item))
            {
                await WaitForRoomAsync(item, cancellationToken);
            }
            if (cancellationToken.CanBeCanceled)
            {
                try
                {
                    await item.Completion.WaitAsync(cancellationToken);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    // Given up before the publisher took it: never published. Taken already: it will be, but the
                    // caller asked not to wait.
                    item.TryAbandon();
                    throw;
                }
            }
            else
            {
                await item.Completion;
            }
        }
        catch (Exception ex) when (activity is not null)
        {
            activity.SetStatus(ActivityStatusCode.Error, ex.Message);
            activity.AddException(ex);
            throw;
        }
        finally
        {
            activity?.Dispose();
        }
    }

    /// <summary>The outbox is full (Redis has been away a while): wait for room, at most PublishTimeout.</summary>
    private async Task WaitForRoomAsync(OutboxItem item, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_node.Options.PublishTimeout);
        try
        {
            await _outbox.AddAsync(item, timeout.Token);
        }
        catch (ChannelClosedException)
        {
            throw ShuttingDown();
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw TimedOut(item.Entry.Kind, $"The outbox stayed full for {_node.Options.PublishTimeout} (RedisStreamsOptions.PublishTimeout); the packet was not published.");
        }
    }

    /// <summary>The outbox gave up a packet Redis did not take within PublishTimeout.</summary>
    private void Expired(OutboxItem item)
        => item.Fail(TimedOut(item.Entry.Kind, $"Redis could not be reached for {_node.Options.PublishTimeout} (RedisStreamsOptions.PublishTimeout); the packet was not published."));

    private RedisStreamsPublishException TimedOut(EntryKind kind, string message)
    {
        _node.Instruments.PublishFailures.Add(1);
        // At most one log line a second, with the count since the last one: under load a long outage gives up
        // thousands of packets a second (each sender gets its exception; the counter counts each).
        var now = Stopwatch.GetTimestamp();
        Interlocked.Increment(ref _timedOutUnlogged);
        var last = Interlocked.Read(ref _timedOutLoggedAt);
        if ((last == 0 || Stopwatch.GetElapsedTime(last, now) >= TimeSpan.FromSeconds(1))
            && Interlocked.CompareExchange(ref _timedOutLoggedAt, now, last) == last)
        {
            Log.PublishTimedOut(_node.Logger, Interlocked.Exchange(ref _timedOutUnlogged, 0), kind, _node.Options.PublishTimeout);
        }

        return new RedisStreamsPublishException(message);
    }

    private long _timedOutUnlogged;
    private long _timedOutLoggedAt;

    internal static RedisStreamsPublishException ShuttingDown() => new("The node is shutting down; the packet was not published.");

    /// <summary>Publishes without making the caller (the reader, typically) wait for Redis; the entry still takes its
    /// place in the ordered outbox at once. A failure is logged.</summary>
    public void PublishInBackground(StreamEntry entry) => _ = PublishLoggedAsync(entry);

    private async Task PublishLoggedAsync(StreamEntry entry)
    {
        try
        {
            await PublishAsync(entry, CancellationToken.None);
        }
        catch (RedisStreamsPublishException ex)
        {
            Log.DispatchFailed(_node.Logger, ex, entry.InvocationId, entry.Kind);
        }
    }

    /// <summary>After Redis restarted empty: every channel this node wrote to is checked against Redis and repaired
    /// from the replay window before the next append, and a sequenced marker through the outbox makes that happen at
    /// once, even when nothing else is sent.</summary>
    public void RepublishSoon()
    {
        Volatile.Write(ref _checkChannels, 1);
        _ = PublishMarkerAsync();
    }

    private async Task PublishMarkerAsync()
    {
        try
        {
            await PublishAsync(new StreamEntry { Kind = EntryKind.Heartbeat, Node = _node.NodeId }, _stopping);
        }
        catch (Exception ex) when (ex is RedisStreamsPublishException or OperationCanceledException)
        {
            Log.HeartbeatFailed(_node.Logger, ex);
        }
    }

    /// <summary>Appends an entry that carries no sequence number (heartbeat, goodbye): not ordered, not repaired.</summary>
    public Task AppendUnsequencedAsync(EntryKind kind)
        => IdempotentAppend.AppendUnsequencedAsync(
            _database(), _node.Keys, StreamEntryFormat.EncodePacket(new StreamEntry { Kind = kind, Node = _node.NodeId }, new StreamEntryFormat.PayloadWriter()),
            _node.Options.MaxLength);

    /// <summary>No more sends are accepted; what is queued is still published by the loop.</summary>
    public void CloseOutbox() => _outbox.Close();

    /// <summary>Fails what the loop could not publish before the node stopped.</summary>
    public void FailRemaining() => _outbox.FailRemaining(ShuttingDown());

    /// <summary>The publish loop: from the moment this node reads the stream (so its own connections get what it
    /// sends) until the outbox is closed and drained, or the node stops.</summary>
    public async Task RunAsync()
    {
        try
        {
            // Publish once this node reads the stream, or, when the node stops before that, only to drain what is left.
            await Task.WhenAny(_readerPositioned, _outbox.Completion).WaitAsync(_stopping);
            while (true)
            {
                if (_ahead is { } ahead)
                {
                    // The batch sent ahead of the last one's answer is the next to confirm.
                    _ahead = null;
                    _b = ahead.State;
                    await PublishBatchAsync(ahead);
                    continue;
                }
                if (!await _outbox.WaitToTakeAsync(_stopping))
                {
                    break;
                }
                _b.Items.Clear();
                _outbox.TakeBatch(_b.Items, MaxBatch);
                if (_b.Items.Count > 0)
                {
                    await PublishBatchAsync(ahead: null);
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        foreach (var state in _states)
        {
            foreach (var item in state.Items)
            {
                item.Fail(new RedisStreamsPublishException("The node stopped before the packet was confirmed by Redis."));
            }
        }
    }

    /// <summary>Publishes the batch in <see cref="_b"/> until every packet of it is confirmed (retrying while Redis is
    /// away), or the node stops. <paramref name="ahead"/>: the batch was routed and its append sent already, before the
    /// batch ahead of it was answered (see <see cref="SendAheadAsync"/>).</summary>
    private async Task PublishBatchAsync(Ahead? ahead)
    {
        var batch = _b.Items;
        var routed = ahead is not null && ahead.Routed;
        var next = 0;
        var attempt = 0;
        while (true)
        {
            List<(int Index, string Channel)>? forced = null;
            try
            {
                var db = _database();
                string epoch;
                AppendResult result;
                if (ahead is { Call: { } sent })
                {
                    ahead = null;
                    epoch = sent.Epoch;
                    await SendAheadAsync(db, epoch, sent.TotalAfter);
                    result = await sent.Call;
                    if (result.Outcome == AppendOutcome.NotAfterPrevious)
                    {
                        Interlocked.Increment(ref _aheadRefused);
                        // The batch ahead of it did not go in in full: nothing of this one was appended. It goes the
                        // ordinary way now, after the repairs and retries the one ahead needed.
                        continue;
                    }
                }
                else
                {
                    if (!routed)
                    {
                        await RouteAsync(batch);
                        routed = true;
                    }
                    // Every channel is repaired before anything new is appended, whichever way the loss was found:
                    // the restart reported (by the reader, maybe, which may have read the new epoch first), or an
                    // epoch other than the one the confirmed entries went to. Appending a new packet to one channel
                    // before another channel's older packets are back would put them after it in the merged order.
                    epoch = await _epoch.CurrentAsync(_stopping);
                    while (Interlocked.Exchange(ref _checkChannels, 0) == 1 || (_confirmedEpoch is not null && _confirmedEpoch != epoch))
                    {
                        try
                        {
                            await RepairChannelsAsync(db, stuck: null);
                        }
                        catch
                        {
                            Volatile.Write(ref _checkChannels, 1);
                            throw;
                        }
                        // Redis restarted again meanwhile (the repair's append found another epoch): repair again.
                        _confirmedEpoch = epoch;
                        epoch = await _epoch.CurrentAsync(_stopping);
                    }
                    if (next >= _b.Appends.Count)
                    {
                        break;
                    }

                    var entries = BuildEntries(next, out forced);
                    var call = IdempotentAppend.AppendAsync(db, _node.Keys, epoch, _node.NodeId, entries, _node.Options.MaxLength,
                        wantIds: Traced(next), expectedTotal: _expectedTotal, abandon: _node.Topology.Token);
                    // A whole fresh batch after a known total: what Redis will hold once it is in is known, and the
                    // next batch can be sent before its answer.
                    // (Each append is one packet numbered on its channel, so a batch that goes in whole adds as many
                    // to the total as it has appends.)
                    if (next == 0 && attempt == 0 && forced is null && _expectedTotal > 0)
                    {
                        await SendAheadAsync(db, epoch, _expectedTotal + _b.Appends.Count);
                    }
                    result = await call;
                }
                if (result.Outcome == AppendOutcome.BehindElsewhere)
                {
                    // Redis lost some of this node's latest entries on some channel (a replica promoted without them):
                    // nothing was appended; every channel is repaired before anything new is, then the batch is
                    // appended without the check.
                    _forceNext.UnionWith(forced?.Select(f => f.Channel) ?? []);
                    await RepairChannelsAsync(db, stuck: null);
                    _confirmedEpoch = epoch;
                    _expectedTotal = 0;
                    continue;
                }
                if (result.Outcome != AppendOutcome.EpochChanged)
                {
                    _confirmedEpoch = epoch;
                }
                _expectedTotal = result.Total;
                var first = next;
                var now = Stopwatch.GetTimestamp();
                for (var k = 0; k < result.Handled; k++)
                {
                    var id = result.EntryIds?[k];
                    for (var n = _b.EntrySizes[k]; n > 0; n--)
                    {
                        var append = _b.Appends[next++];
                        var item = append.Item;
                        // The window keeps the packet's bytes inside the entry sent (no copy of its own per packet).
                        _window.Add(new PublishedEntry(append.Entry.Sequence, _b.Sent[next - 1], now, item.Activity?.Context ?? default, append.Channel));
                        _confirmed[append.Channel] = append.Entry.Sequence;
                        item.Activity?.SetTag("messaging.message.id", id);
                        if (--item.PartsLeft == 0)
                        {
                            _node.Instruments.PublishDuration.Record(Stopwatch.GetElapsedTime(item.EnqueuedAt, now).TotalMilliseconds);
                            item.Complete();
                        }
                    }
                }
                if (forced is not null)
                {
                    // A forced entry the script did not reach (it stopped at an earlier one) is forced again next time.
                    foreach (var (index, channel) in forced)
                    {
                        if (index >= result.Handled)
                        {
                            _forceNext.Add(channel);
                        }
                    }
                    forced = null;
                }
                _node.Instruments.Published.Add(next - first);
                if (result.Outcome == AppendOutcome.EpochChanged)
                {
                    _expectedTotal = 0;
                    await _epoch.RefreshAsync(_stopping);
                }
                else if (result.Outcome == AppendOutcome.SequenceMissing)
                {
                    // Redis lost entries of this channel (a replica promoted without them, say): it may have lost
                    // some of the other channels too, and they are all put back, in their first order, before the
                    // stuck entry and anything after it.
                    var stuck = _b.Appends[next];
                    await RepairChannelsAsync(db, (stuck.Channel, new ChannelLoss(result.LastSequence, stuck.Entry.Sequence)));
                }
                if (attempt > 0)
                {
                    Log.PublishRecovered(_node.Logger, attempt);
                    attempt = 0;
                }
            }
            catch (Exception ex) when (!_stopping.IsCancellationRequested && ex is not OperationCanceledException)
            {
                // Redis unreachable, timed out, or answered an error: the entries stay in order and are retried.
                if (forced is not null)
                {
                    _forceNext.UnionWith(forced.Select(f => f.Channel));
                }
                attempt++;
                var delay = Retry.Backoff(attempt);
                var waiting = routed ? _b.Appends.Count - next : batch.Count;
                Log.PublishFailed(_node.Logger, ex, waiting, attempt, (int)delay.TotalMilliseconds);
                _node.Instruments.PublishRetries.Add(waiting);
                foreach (var item in batch)
                {
                    if (item.PartsLeft > 0)
                    {
                        item.Activity?.AddEvent(new ActivityEvent("publish.retry", tags: new ActivityTagsCollection
                        {
                            ["retry.attempt"] = attempt,
                            ["exception.type"] = ex.GetType().FullName,
                            ["exception.message"] = ex.Message,
                        }));
                    }
                }
                await _node.Topology.DelayAsync(delay, _stopping);
            }
        }
    }

    /// <summary>Sends the next batch's append before the answer to the one in flight (which Redis, once it applied it
    /// in full, leaves at <paramref name="totalAfter"/> as this node's total), so the round trip of one batch overlaps
    /// the next instead of being paid one batch after the other. The call asks for that exact total: should the one
    /// ahead stop short (a lost predecessor, another epoch, an error, a connection lost before it ran), Redis appends
    /// nothing of this one (<see cref="AppendOutcome.NotAfterPrevious"/>), and it is sent again the ordinary way once
    /// the one ahead is dealt with, so nothing overtakes a packet sent before it. Only one batch is ahead at a time, and
    /// none while a channel is to be repaired or forced past a hole.</summary>
    private async Task SendAheadAsync(IDatabase db, string epoch, long totalAfter)
    {
        if (_ahead is not null || _forceNext.Count > 0 || Volatile.Read(ref _checkChannels) == 1 || !db.Multiplexer.IsConnected)
        {
            return;
        }
        var state = _states[0] == _b ? _states[1] : _states[0];
        state.Items.Clear();
        _outbox.TakeBatch(state.Items, MaxBatch);
        if (state.Items.Count == 0)
        {
            return;
        }
        // From here the batch is the loop's to publish, whatever happens below.
        var ahead = _ahead = new Ahead(state);
        var current = _b;
        _b = state;
        try
        {
            try
            {
                await RouteAsync(state.Items);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // An owner lookup failed: nothing is numbered yet, and the batch is routed again when its turn comes.
                return;
            }
            ahead.Routed = true;
            // Nothing is forced: no channel was waiting to be (checked above), and only this loop adds one.
            var entries = BuildEntries(0, out _);
            Interlocked.Increment(ref _sentAhead);
            ahead.Call = new AheadCall(
                IdempotentAppend.AppendAsync(db, _node.Keys, epoch, _node.NodeId, entries, _node.Options.MaxLength,
                    wantIds: Traced(0), expectedTotal: totalAfter, exact: true, abandon: _node.Topology.Token),
                epoch, totalAfter + state.Appends.Count);
        }
        finally
        {
            _b = current;
        }
    }

    /// <summary>Whether a packet from <c>_b.Appends[next..]</c> is traced: the new entries' ids are only wanted for
    /// traces.</summary>
    private bool Traced(int next)
    {
        for (var i = next; i < _b.Appends.Count; i++)
        {
            if (_b.Appends[i].Item.Activity is not null)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The stream entries for <c>_b.Appends[next..]</c>: each run of consecutive packets to the same channel
    /// becomes one entry (a batch, at most <see cref="MaxPacketsPerEntry"/>); <c>_b.EntrySizes</c> gets each entry's packet
    /// count. The first entry of a channel whose next append must jump over a hole is forced.</summary>
    private List<PendingAppend> BuildEntries(int next, out List<(int Index, string Channel)>? forced)
    {
        forced = null;
        var entries = new List<PendingAppend>(Math.Min(_b.Appends.Count - next, MaxPacketsPerEntry));
        _b.EntrySizes.Clear();
        var i = next;
        while (i < _b.Appends.Count)
        {
            var channel = _b.Appends[i].Channel;
            var j = EndOfEntry(_b.Appends, i, static a => (a.Channel, a.Packet.Length, false));
            var force = _forceNext.Count > 0 && _forceNext.Remove(channel);
            if (force)
            {
                (forced ??= []).Add((entries.Count, channel));
            }
            // The packets are in the arena, which the next batch writes over: an entry of one packet gets a copy.
            var value = StreamEntryFormat.EncodeBatch(_b.Appends, i, j - i, static a => a.Packet, _batch, _b.Sent.AsSpan(i, j - i), copySingle: true);
            entries.Add(new PendingAppend(_b.Appends[i].Entry.Sequence, _b.Appends[j - 1].Entry.Sequence, value, force, channel));
            _b.EntrySizes.Add(j - i);
            i = j;
        }
        return entries;
    }

    /// <summary>Where the entry that starts with <paramref name="packets"/>[<paramref name="start"/>] ends (exclusive):
    /// it takes the packets that follow for the same channel, at most <see cref="MaxPacketsPerEntry"/> and about
    /// <see cref="MaxBytesPerEntry"/>, and a packet that must jump over a hole (forced) starts an entry of its own.</summary>
    private static int EndOfEntry<T>(IReadOnlyList<T> packets, int start, Func<T, (string Channel, int Bytes, bool Forced)> describe)
    {
        var (channel, bytes, _) = describe(packets[start]);
        var end = start + 1;
        while (end < packets.Count && end - start < MaxPacketsPerEntry)
        {
            var (nextChannel, nextBytes, forced) = describe(packets[end]);
            if (nextChannel != channel || forced || (bytes += nextBytes) > MaxBytesPerEntry)
            {
                break;
            }
            end++;
        }
        return end;
    }

    /// <summary>Turns the batch into appends, in order: each packet to its channel (see the class summary), numbered
    /// on that channel and encoded. The owners of connections not cached yet are looked up first, in one command; a
    /// Redis error there is thrown before anything is numbered, so the caller can simply retry.</summary>
    private async Task RouteAsync(List<OutboxItem> batch)
    {
        _unknownOwners.Clear();
        foreach (var item in batch)
        {
            if (item.Entry.Kind == EntryKind.Connections)
            {
                var targets = item.Entry.Targets;
                for (var i = 0; i < targets.Count; i++)
                {
                    if (!_registry.TryGetKnownOwner(targets[i], out _))
                    {
                        _unknownOwners.Add(targets[i]);
                    }
                }
            }
        }
        if (_unknownOwners.Count > 0)
        {
            await _registry.LookUpAsync(_unknownOwners);
        }

        _b.Appends.Clear();
        if (_b.Arena.Capacity > ArenaKept)
        {
            _b.Arena = new StreamEntryFormat.PayloadWriter();
        }
        _b.Arena.Reset();
        foreach (var item in batch)
        {
            var entry = item.Entry;
            switch (entry.Kind)
            {
                case EntryKind.Connections:
                    RouteToOwners(item);
                    break;
                case EntryKind.GroupCommand or EntryKind.Ack or EntryKind.Invoke or EntryKind.Result:
                    AddAppend(item, entry, entry.TargetNode);
                    break;
                default:
                    AddAppend(item, entry, "");
                    break;
            }
        }
        GroupInboxRuns();
    }

    /// <summary>Between two packets for the shared stream, packets for different inboxes are put together per inbox
    /// (keeping each inbox's order), so that each inbox gets one entry per run rather than one per packet. No node
    /// reads two inboxes, so nobody can see the difference; the shared stream's packets stay where they were, which
    /// keeps every sender's order for a node that reads the shared stream and its inbox.</summary>
    private void GroupInboxRuns()
    {
        var start = 0;
        while (start < _b.Appends.Count)
        {
            if (_b.Appends[start].Channel.Length == 0)
            {
                start++;
                continue;
            }
            var end = start;
            var mixed = false;
            while (end < _b.Appends.Count && _b.Appends[end].Channel.Length > 0)
            {
                mixed |= _b.Appends[end].Channel != _b.Appends[start].Channel;
                end++;
            }
            if (mixed)
            {
                var run = _b.Appends.GetRange(start, end - start);
                var order = run.Select(a => a.Channel).Distinct().ToList();
                var k = start;
                foreach (var channel in order)
                {
                    foreach (var append in run)
                    {
                        if (append.Channel == channel)
                        {
                            _b.Appends[k++] = append;
                        }
                    }
                }
            }
            start = end;
        }
    }

    /// <summary>A send to connections: to the inbox of the node holding them; split per node when they are on several;
    /// to the shared stream for those no live node is known to hold.</summary>
    private void RouteToOwners(OutboxItem item)
    {
        var entry = item.Entry;
        string? single = null;
        var several = false;
        for (var i = 0; i < entry.Targets.Count; i++)
        {
            var owner = _registry.TryGetKnownOwner(entry.Targets[i], out var known) ? known : "";
            if (single is null)
            {
                single = owner;
            }
            else if (single != owner)
            {
                several = true;
                break;
            }
        }
        if (!several)
        {
            AddAppend(item, entry, single ?? "");
            return;
        }

        var byOwner = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var target in entry.Targets)
        {
            var owner = _registry.TryGetKnownOwner(target, out var known) ? known : "";
            if (!byOwner.TryGetValue(owner, out var targets))
            {
                byOwner[owner] = targets = [];
            }
            targets.Add(target);
        }
        item.PartsLeft = byOwner.Count;
        foreach (var (owner, targets) in byOwner)
        {
            AddAppend(item, new StreamEntry
            {
                Kind = EntryKind.Connections, Node = entry.Node, Hub = entry.Hub, TraceParent = entry.TraceParent,
                Targets = targets, Messages = entry.Messages,
            }, owner);
        }
    }

    private void AddAppend(OutboxItem item, StreamEntry entry, string channel)
    {
        ref var last = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_numbered, channel, out _);
        entry.Sequence = ++last;
        if (channel.Length > 0)
        {
            item.Activity?.SetTag("messaging.destination.name", (string?)_node.Keys.Inbox(channel));
        }
        var start = _b.Arena.Length;
        StreamEntryFormat.WritePacket(entry, _b.Arena);
        _b.Appends.Add(new Append(item, entry, channel, _b.Arena.WrittenSince(start)));
        if (_b.Sent.Length < _b.Appends.Count)
        {
            Array.Resize(ref _b.Sent, _b.Sent.Length * 2);
        }
    }

    /// <summary>Redis lost entries (it restarted empty, or an append found its channel's predecessors missing): asks
    /// Redis for this node's last number on every channel the replay window holds entries of, the inboxes of nodes it
    /// thinks gone included (a node silent for a while may still be reading), and republishes from the replay window
    /// what Redis lacks, all channels in one plan. <paramref name="stuck"/> is the loss an append already found, if
    /// any.</summary>
    private async Task RepairChannelsAsync(IDatabase db, (string Channel, ChannelLoss Loss)? stuck)
    {
        // A channel the window holds nothing of has nothing to republish: its loss, if any, is found (and its next entry
        // forced past it) when this node next appends there.
        var channels = _confirmed.Where(c => c.Value > 0 && c.Key != stuck?.Channel && _window.Holds(c.Key)).ToList();
        var lasts = new Task<RedisValue>[channels.Count];
        for (var i = 0; i < channels.Count; i++)
        {
            var key = channels[i].Key.Length == 0 ? _node.Keys.Sequences : _node.Keys.InboxSequences(channels[i].Key);
            lasts[i] = db.HashGetAsync(key, _node.NodeId);
        }
        await Task.WhenAll(lasts);
        var losses = new Dictionary<string, ChannelLoss>(StringComparer.Ordinal);
        if (stuck is { } found)
        {
            losses[found.Channel] = found.Loss;
        }
        for (var i = 0; i < channels.Count; i++)
        {
            var (channel, confirmed) = channels[i];
            var last = lasts[i].Result.IsNull ? 0 : (long)lasts[i].Result;
            if (last < confirmed)
            {
                losses[channel] = new ChannelLoss(last, confirmed + 1);
            }
        }
        if (losses.Count > 0)
        {
            await RepairAsync(db, losses);
        }
    }

    /// <summary>Per channel, Redis holds a lower last number for this node than the next one to append: entries were
    /// lost (restart without data, or a replica promoted without them). Appends them again from the replay window, in
    /// their first order across channels, in one call; the channels whose next append must be forced past a hole the
    /// window cannot fill are marked.</summary>
    private async Task RepairAsync(IDatabase db, IReadOnlyDictionary<string, ChannelLoss> losses)
    {
        var plan = _window.PlanRepair(losses);
        foreach (var (channel, loss) in losses)
        {
            Log.SequenceRepair(_node.Logger, channel.Length == 0 ? "shared stream" : "inbox of " + channel, loss.Last, loss.Next,
                plan.Republish.Count(r => r.Entry.Channel == channel));
        }
        if (plan.Lost > 0)
        {
            Log.ReplayWindowExceeded(_node.Logger, plan.Lost);
        }
        if (plan.Republish.Count == 0)
        {
            _forceNext.UnionWith(plan.ForceNextChannels);
            return;
        }
        var spans = new List<Activity>();
        try
        {
            foreach (var (entry, _) in plan.Republish)
            {
                if (entry.Context != default
                    && BackplaneInstruments.Source.StartActivity("republish " + _node.Keys.StreamName, ActivityKind.Producer, entry.Context) is { } republish)
                {
                    republish.SetTag("messaging.system", "redis");
                    republish.SetTag("messaging.destination.name", entry.Channel.Length == 0 ? _node.Keys.StreamName : (string?)_node.Keys.Inbox(entry.Channel));
                    republish.SetTag("messaging.operation.type", "send");
                    republish.SetTag("signalr.redis_streams.sequence", entry.Sequence);
                    spans.Add(republish);
                }
            }
            var epoch = await _epoch.CurrentAsync(_stopping);
            // Consecutive packets of one channel go in one entry, unless a packet must jump over a hole: it starts one.
            var appends = new List<PendingAppend>();
            var writer = new StreamEntryFormat.PayloadWriter();
            var i = 0;
            while (i < plan.Republish.Count)
            {
                var (head, force) = plan.Republish[i];
                var j = EndOfEntry(plan.Republish, i, static r => (r.Entry.Channel, r.Entry.Packet.Length, r.Force));
                var value = StreamEntryFormat.EncodeBatch(plan.Republish, i, j - i, static r => r.Entry.Packet, writer);
                appends.Add(new PendingAppend(head.Sequence, plan.Republish[j - 1].Entry.Sequence, value, force, head.Channel));
                i = j;
            }
            var result = await IdempotentAppend.AppendAsync(db, _node.Keys, epoch, _node.NodeId, appends, _node.Options.MaxLength, wantIds: false,
                abandon: _node.Topology.Token);
            if (result.Outcome == AppendOutcome.EpochChanged)
            {
                _expectedTotal = 0;
                await _epoch.RefreshAsync(_stopping);
                return;
            }
            _expectedTotal = result.Total;
            _forceNext.UnionWith(plan.ForceNextChannels);
        }
        finally
        {
            foreach (var span in spans)
            {
                span.Dispose();
            }
        }
    }

    /// <summary>One batch's packets from the outbox, as routed (<see cref="Appends"/>, their bytes in
    /// <see cref="Arena"/>), and, for its current append call, the slices each packet has in the entries sent
    /// (<see cref="Sent"/>) and each entry's packet count (<see cref="EntrySizes"/>).</summary>
    private sealed class BatchState
    {
        public readonly List<OutboxItem> Items = new(MaxBatch);
        public readonly List<Append> Appends = new(MaxBatch);
        public readonly List<int> EntrySizes = [];
        public StreamEntryFormat.PayloadWriter Arena = new();
        public ReadOnlyMemory<byte>[] Sent = new ReadOnlyMemory<byte>[MaxBatch];
    }

    /// <summary>A batch taken while the one before it was in flight: routed or not yet, and its append sent or not.</summary>
    private sealed class Ahead(BatchState state)
    {
        public BatchState State { get; } = state;
        public bool Routed { get; set; }
        public AheadCall? Call { get; set; }
    }

    /// <summary>An append sent ahead: its call, the epoch it was sent for, and the node's total once it is in.</summary>
    private sealed record AheadCall(Task<AppendResult> Call, string Epoch, long TotalAfter);

    /// <summary>One entry to append: the packet it comes from, the entry (numbered on its channel), its channel ("" for
    /// the shared stream, else the node whose inbox it goes to) and its encoded packet (in the batch's buffer).</summary>
    private readonly record struct Append(OutboxItem Item, StreamEntry Entry, string Channel, ReadOnlyMemory<byte> Packet);
}
