using System.Diagnostics;
using System.Globalization;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>The node's reading side: the blocking XREAD loop, its start position, deduplication and gap detection, and dispatch to the hubs.</summary>
internal sealed partial class RedisStreamsBackplane
{
    private async Task ReadLoopAsync()
    {
        var db = _readerConnection!.GetDatabase();
        var attempt = 0;
        string? readerEpoch = null;
        var blockMs = (long)_options.ReadBlockTime.TotalMilliseconds;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                if (readerEpoch is null || attempt > 0)
                {
                    // First start, or after an error: is this still the Redis (and stream) we were reading?
                    var epoch = await GetEpochAsync(refresh: true);
                    if (readerEpoch is null)
                    {
                        _cursor = await ResolveStartAsync();
                        Log.ReaderPositioned(_logger, NodeId, Keys.StreamName, _cursor);
                        // From a concrete id on, whatever this node appends will be read: publishing may begin.
                        _readerReady.TrySetResult();
                    }
                    else if (epoch != readerEpoch)
                    {
                        // Restarted empty: the old ids mean nothing now; read the new stream from its start.
                        OnRedisRestartedEmpty(readerEpoch, epoch);
                        _cursor = "0-0";
                    }
                    readerEpoch = epoch;
                }

                var result = await db.ExecuteAsync("XREAD", "COUNT", _options.ReadCount, "BLOCK", blockMs, "STREAMS", Keys.Stream, _cursor);
                if (attempt > 0)
                {
                    Log.ReadRecovered(_logger, Keys.StreamName, attempt, _cursor);
                    attempt = 0;
                    ResetMembershipClock();
                }
                Volatile.Write(ref _lastReadOk, Stopwatch.GetTimestamp());
                _readerReady.TrySetResult();
                if (!result.IsNull)
                {
                    await ProcessReadResultAsync(result);
                }
            }
            catch (Exception ex) when (!_stopping.IsCancellationRequested && ex is not OperationCanceledException)
            {
                // Whatever failed (Redis, or a reply of an unexpected shape), the loop keeps its cursor and goes on.
                attempt++;
                Instruments.ReadErrors.Add(1);
                var delay = Backoff(attempt);
                Log.ReadFailed(_logger, ex, Keys.StreamName, _cursor, attempt, (int)delay.TotalMilliseconds);
                try
                {
                    await Task.Delay(delay, _stopping.Token);
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

    /// <summary>Atomically: the stream's last entry id, and every node's last appended sequence number at that point.</summary>
    private const string StartScript = """
        local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
        local id = '0-0'
        if #last > 0 then id = last[1][1] end
        return {id, redis.call('HGETALL', KEYS[2])}
        """;

    /// <summary>A concrete id to read after: the stream's last entry now (never '$', which would skip entries added
    /// between two reads), or the start of an empty stream. The senders' sequence numbers at that very point become the
    /// baseline of gap detection, so that a hole is noticed even in the first entry read from a sender.</summary>
    private async Task<string> ResolveStartAsync()
    {
        var result = (RedisResult[])(await _connection!.GetDatabase().ScriptEvaluateAsync(StartScript, [Keys.Stream, Keys.Sequences]))!;
        var sequences = (RedisResult[])result[1]!;
        for (var i = 0; i + 1 < sequences.Length; i += 2)
        {
            var node = (string)sequences[i]!;
            var sequence = (long)sequences[i + 1];
            _lastSequence.AddOrUpdate(node, sequence, (_, known) => Math.Max(known, sequence));
        }
        return (string)result[0]!;
    }

    private async Task ProcessReadResultAsync(RedisResult result)
    {
        // XREAD reply: [[stream, [[id, [field, value, ...]], ...]]]
        foreach (var stream in (RedisResult[])result!)
        {
            var parts = (RedisResult[])stream!;
            foreach (var raw in (RedisResult[])parts[1]!)
            {
                var pair = (RedisResult[])raw!;
                var id = pair[0].ToString();
                _cursor = id;
                Instruments.Received.Add(1);
                var flat = (RedisResult[])pair[1]!;
                var fields = new NameValueEntry[flat.Length / 2];
                for (var i = 0; i < fields.Length; i++)
                {
                    fields[i] = new NameValueEntry((RedisValue)flat[2 * i], (RedisValue)flat[2 * i + 1]);
                }
                await ProcessEntryAsync(id, fields);
            }
        }
    }

    internal async Task ProcessEntryAsync(string id, NameValueEntry[] fields)
    {
        StreamEntry entry;
        try
        {
            entry = StreamEntryFormat.Decode(fields);
        }
        catch (InvalidDataException ex)
        {
            Instruments.Malformed.Add(1);
            Log.MalformedEntry(_logger, id, Keys.StreamName, ex.Message);
            return;
        }

        RecordLag(id);
        Seen(entry.Node);
        if (entry.Sequence > 0 && !Deduplicate(entry))
        {
            return;
        }

        switch (entry.Kind)
        {
            case EntryKind.Heartbeat:
                return;
            case EntryKind.Goodbye:
                if (entry.Node != NodeId)
                {
                    RemoveNode(entry.Node, "said goodbye");
                }
                return;
            case EntryKind.Ack:
                if (entry.TargetNode == NodeId && _acks.TryRemove(entry.AckId, out var ack))
                {
                    ack.Tcs.TrySetResult();
                }
                return;
            default:
                break;
        }

        if (!_hubs.TryGetValue(entry.Hub, out var hub))
        {
            return; // a hub this node does not serve
        }
        if (entry.TargetNode.Length > 0 && entry.TargetNode != NodeId)
        {
            return; // addressed to another node
        }

        using var activity = StartConsumerActivity(id, entry);
        try
        {
            var reached = await hub.DispatchAsync(entry, activity);
            activity?.SetTag("signalr.redis_streams.connections_reached", reached);
            if (reached > 0)
            {
                Instruments.Dispatched.Add(reached);
            }
        }
        catch (Exception ex)
        {
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            Log.DispatchFailed(_logger, ex, id, entry.Kind);
        }
    }

    private Activity? StartConsumerActivity(string id, StreamEntry entry)
    {
        if (!BackplaneInstruments.Source.HasListeners())
        {
            return null;
        }
        ActivityContext.TryParse(entry.TraceParent, null, isRemote: true, out var parent);
        var activity = BackplaneInstruments.Source.StartActivity("receive " + Keys.StreamName, ActivityKind.Consumer, parent);
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "redis");
            activity.SetTag("messaging.destination.name", Keys.StreamName);
            activity.SetTag("messaging.operation.type", "process");
            activity.SetTag("messaging.operation.name", "XREAD");
            activity.SetTag("messaging.message.id", id);
            activity.SetTag("signalr.hub", entry.Hub);
            activity.SetTag("signalr.redis_streams.kind", entry.Kind.ToString());
            activity.SetTag("signalr.redis_streams.node", NodeId);
            activity.SetTag("signalr.redis_streams.sender", entry.Node);
            activity.SetTag("signalr.redis_streams.sequence", entry.Sequence);
        }
        return activity;
    }

    private void RecordLag(string id)
    {
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        if (dash > 0 && long.TryParse(id.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out var ms))
        {
            var lag = Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - ms);
            Interlocked.Exchange(ref _lastReadLagMs, lag);
            Instruments.ReadLag.Record(lag);
        }
    }

    /// <summary>True when the entry is new; false for a duplicate (same sender, sequence already processed). Counts gaps.</summary>
    private bool Deduplicate(StreamEntry entry)
    {
        var last = _lastSequence.GetValueOrDefault(entry.Node);
        if (entry.Sequence <= last)
        {
            Instruments.Duplicates.Add(1);
            return false;
        }
        // A sender never seen (not in the baseline taken at start) appended everything after our start position, from
        // its first number on; unless its sequence restarted after Redis lost data.
        if (entry.Sequence > last + 1 && (last > 0 || !entry.SequenceRestarts))
        {
            var missing = entry.Sequence - last - 1;
            Instruments.Gaps.Add(missing);
            Log.GapDetected(_logger, missing, entry.Node, last, entry.Sequence);
        }
        _lastSequence[entry.Node] = entry.Sequence;
        return true;
    }
}
