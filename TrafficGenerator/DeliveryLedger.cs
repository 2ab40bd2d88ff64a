namespace TrafficGenerator;

/// <summary>
/// The generator's own count of what was sent and what arrived. A message is <b>sent</b> once its hub invocation
/// completed (the backplane has it in Redis). It is <b>delivered</b> once every user that expected it holds it, and
/// <b>lost</b> when one of them still lacks it <see cref="Deadline"/> after the send completed. A user expects a message
/// when its session (one connection, after it joined the room) began before the message was issued and is still open:
/// a user whose connection dropped misses what was sent meanwhile, which the backplane does not promise to deliver.
/// Thread-safe; time is passed in, so the rules can be tested without waiting.
/// </summary>
public sealed class DeliveryLedger(TimeSpan deadline)
{
    /// <summary>How long judged messages and ended sessions are remembered (to count late duplicates).</summary>
    public static readonly TimeSpan Memory = TimeSpan.FromSeconds(60);

    private readonly Lock _gate = new();
    private readonly Dictionary<long, Message> _open = [];
    private readonly Dictionary<string, Session> _sessions = new(StringComparer.Ordinal);
    private readonly Queue<(DateTimeOffset JudgedAt, long Sequence)> _judged = new();
    private TrafficTotals _totals = new();

    /// <summary>How long after its send completed a message may take to reach every user.</summary>
    public TimeSpan Deadline { get; } = deadline;

    /// <summary>The counts so far.</summary>
    public TrafficTotals Totals
    {
        get
        {
            lock (_gate)
            {
                return _totals with { Pending = _open.Values.Count(m => m.ConfirmedAt is not null) };
            }
        }
    }

    /// <summary>A connection is being opened; what it receives is recorded, but it expects nothing until
    /// <see cref="SessionJoined"/>.</summary>
    public void SessionOpened(string session)
    {
        lock (_gate)
        {
            _sessions.TryAdd(session, new Session());
        }
    }

    /// <summary>The session's connection has joined the room at <paramref name="at"/>: it expects what is issued from now on.</summary>
    public void SessionJoined(string session, DateTimeOffset at)
    {
        lock (_gate)
        {
            Get(session).JoinedAt = at;
        }
    }

    /// <summary>The session's connection closed at <paramref name="at"/>: it expects nothing any more.</summary>
    public void SessionEnded(string session, DateTimeOffset at)
    {
        lock (_gate)
        {
            Get(session).EndedAt = at;
        }
    }

    /// <summary>Message <paramref name="sequence"/> is about to be sent.</summary>
    public void Issued(long sequence, DateTimeOffset at)
    {
        lock (_gate)
        {
            _open[sequence] = new Message(at);
        }
    }

    /// <summary>The send of <paramref name="sequence"/> completed at <paramref name="at"/>.</summary>
    public void Confirmed(long sequence, DateTimeOffset at)
    {
        lock (_gate)
        {
            if (_open.TryGetValue(sequence, out var message))
            {
                message.ConfirmedAt = at;
                _totals = _totals with { Sent = _totals.Sent + 1 };
            }
        }
    }

    /// <summary>The send of <paramref name="sequence"/> threw: it is not expected anywhere.</summary>
    public void Failed(long sequence)
    {
        lock (_gate)
        {
            if (_open.Remove(sequence))
            {
                _totals = _totals with { FailedToSend = _totals.FailedToSend + 1 };
            }
        }
    }

    /// <summary><paramref name="session"/> received message <paramref name="sequence"/>.</summary>
    public void Received(string session, long sequence)
    {
        lock (_gate)
        {
            if (!Get(session).Received.Add(sequence))
            {
                _totals = _totals with { Duplicates = _totals.Duplicates + 1 };
            }
        }
    }

    /// <summary>
    /// Judges every sent message not judged yet: delivered when every session that expects it holds it, lost when one
    /// still lacks it <see cref="Deadline"/> after its send completed. Returns the messages found lost now.
    /// </summary>
    public IReadOnlyList<LostMessage> Judge(DateTimeOffset now)
    {
        lock (_gate)
        {
            var lost = new List<LostMessage>();
            foreach (var (sequence, message) in _open.Where(m => m.Value.ConfirmedAt is not null).ToList())
            {
                var expecting = _sessions
                    .Where(s => s.Value.JoinedAt <= message.IssuedAt && s.Value.EndedAt is null)
                    .ToList();
                var missing = expecting.Where(s => !s.Value.Received.Contains(sequence)).Select(s => s.Key).ToList();
                if (expecting.Count > 0 && missing.Count == 0)
                {
                    _totals = _totals with { Delivered = _totals.Delivered + 1 };
                }
                else if (now - message.ConfirmedAt >= Deadline)
                {
                    if (expecting.Count == 0)
                    {
                        _totals = _totals with { Unchecked = _totals.Unchecked + 1 }; // nobody was connected throughout
                    }
                    else
                    {
                        _totals = _totals with { Lost = _totals.Lost + 1 };
                        lost.Add(new LostMessage(sequence, message.IssuedAt, missing));
                    }
                }
                else
                {
                    continue;
                }

                _open.Remove(sequence);
                _judged.Enqueue((now, sequence));
            }

            Forget(now);
            return lost;
        }
    }

    private void Forget(DateTimeOffset now)
    {
        while (_judged.TryPeek(out var judged) && now - judged.JudgedAt > Memory)
        {
            _judged.Dequeue();
            foreach (var session in _sessions.Values)
            {
                session.Received.Remove(judged.Sequence);
            }
        }

        foreach (var ended in _sessions.Where(s => now - s.Value.EndedAt > Memory).Select(s => s.Key).ToList())
        {
            _sessions.Remove(ended);
        }
    }

    private Session Get(string session)
    {
        if (!_sessions.TryGetValue(session, out var state))
        {
            state = new Session();
            _sessions.Add(session, state);
        }

        return state;
    }

    private sealed class Message(DateTimeOffset issuedAt)
    {
        public DateTimeOffset IssuedAt { get; } = issuedAt;

        public DateTimeOffset? ConfirmedAt { get; set; }
    }

    private sealed class Session
    {
        public DateTimeOffset? JoinedAt { get; set; }

        public DateTimeOffset? EndedAt { get; set; }

        public HashSet<long> Received { get; } = [];
    }
}

/// <summary>The generator's counts (see <see cref="DeliveryLedger"/>).</summary>
/// <param name="Sent">Messages whose send completed.</param>
/// <param name="Delivered">Sent messages that every user expecting them holds.</param>
/// <param name="Lost">Sent messages that a user expecting them still lacked at the deadline.</param>
/// <param name="Pending">Sent messages not judged yet (on their way, within the deadline).</param>
/// <param name="FailedToSend">Sends that threw (the sender's connection dropped, or the hub failed the send).</param>
/// <param name="Duplicates">Messages a session received more than once.</param>
/// <param name="Unchecked">Sent messages no user could be expected to receive (none stayed connected).</param>
public sealed record TrafficTotals(long Sent = 0, long Delivered = 0, long Lost = 0, long Pending = 0, long FailedToSend = 0, long Duplicates = 0, long Unchecked = 0);

/// <summary>A message found lost: its number, when it was issued, and the sessions that lack it.</summary>
public sealed record LostMessage(long Sequence, DateTimeOffset IssuedAt, IReadOnlyList<string> MissingAt);
