using System.Diagnostics;
using Benchmarks.Infrastructure;

namespace Benchmarks.Scenarios;

/// <summary>What one client received in one run of a cell: which sequence numbers (to find duplicates and, afterwards,
/// losses), whether they came in order, and their latencies. Written only by the client's receive loop (SignalR's
/// .NET client runs a connection's handlers one at a time); read after the run has drained. Nothing here allocates
/// per message.</summary>
internal sealed class ClientSink
{
    /// <summary>Messages one client can be sent in one run (the sender stops before).</summary>
    public const int Capacity = 1 << 16;

    private readonly ulong[] _seen = new ulong[Capacity / 64];
    private RunState? _state;
    private int _run = -1;
    private long _modulus = 1;
    private long _residue = -1;
    private long _lastSeq = -1;
    private long _maxLocal = -1;
    private int _received;
    private int _duplicates;
    private int _reordered;
    private int _misdelivered;
    private int _stale;
    private long _lastArrival;

    public LatencyHistogram Histogram { get; } = new();

    /// <summary>Distinct messages of this run received.</summary>
    public int Received => Volatile.Read(ref _received);

    /// <summary>Extra copies of a message already received.</summary>
    public int Duplicates => _duplicates;

    /// <summary>Arrivals with a sequence number lower than one already received (the sender is always server 0).</summary>
    public int Reordered => _reordered;

    /// <summary>Messages of this run that were not addressed to this client (another group, another connection).</summary>
    public int Misdelivered => _misdelivered;

    /// <summary>Messages of an earlier run that arrived during this one (that run had counted them as lost).</summary>
    public int Stale => _stale;

    /// <summary><see cref="Stopwatch"/> timestamp of the last arrival of this run; 0 if none.</summary>
    public long LastArrival => _lastArrival;

    /// <summary>Whether message <paramref name="seq"/> arrived (valid after the run, for messages addressed to this client).</summary>
    public bool Has(long seq)
    {
        if (_residue < 0 || seq % _modulus != _residue)
        {
            return false;
        }

        var local = seq / _modulus;
        return local < Capacity && (_seen[local >> 6] & (1UL << (int)(local & 63))) != 0;
    }

    /// <summary>Prepares for a run (while nothing is in flight): this client is sent the sequence numbers <c>seq</c>
    /// with <c>seq % modulus == residue</c>, none when <paramref name="residue"/> is negative.</summary>
    public void Reset(int run, long modulus, long residue, RunState state)
    {
        Volatile.Write(ref _run, -1);
        if (_maxLocal >= 0)
        {
            Array.Clear(_seen, 0, (int)(_maxLocal >> 6) + 1);
        }

        _maxLocal = -1;
        Histogram.Clear();
        _received = 0;
        _duplicates = 0;
        _reordered = 0;
        _misdelivered = 0;
        _stale = 0;
        _lastSeq = -1;
        _lastArrival = 0;
        _modulus = modulus;
        _residue = residue;
        _state = state;
        Volatile.Write(ref _run, run);
    }

    /// <summary>The client's handler: run, sequence number, latency (arrival − the timestamp in the message).</summary>
    public void OnMessage(int run, long seq, long latencyTicks)
    {
        var now = Stopwatch.GetTimestamp();
        if (run != Volatile.Read(ref _run))
        {
            _stale++;
            return;
        }

        if (_residue < 0 || seq < 0 || seq % _modulus != _residue || seq / _modulus >= Capacity)
        {
            _misdelivered++;
            return;
        }

        var local = seq / _modulus;
        ref var word = ref _seen[local >> 6];
        var bit = 1UL << (int)(local & 63);
        if ((word & bit) != 0)
        {
            _duplicates++;
            return;
        }

        word |= bit;
        if (local > _maxLocal)
        {
            _maxLocal = local;
        }

        if (seq < _lastSeq)
        {
            _reordered++;
        }
        else
        {
            _lastSeq = seq;
        }

        Histogram.RecordTicks(latencyTicks);
        _lastArrival = now;
        Volatile.Write(ref _received, _received + 1);
        _state?.Delivered(seq);
    }
}

/// <summary>The sender's side of one run: per sequence number, whether its send returned or threw and how many of its
/// recipients have it. A message is <i>settled</i> once every recipient has it (or, in the publish-path cell, once its
/// send returned) or its send threw; settling frees its slot in the in-flight window. Reused across runs.</summary>
internal sealed class RunState
{
    private const byte Pending = 1;
    private const byte SentOk = 2;
    private const byte SendFailed = 3;

    private readonly int[] _counts;
    private readonly int[] _settledFlags;
    private readonly byte[] _status;
    private int _run = -1;
    private int[] _targets = [1];
    private long _modulus = 1;
    private long _used;
    private SemaphoreSlim? _window;
    private bool _settleOnSend;
    private long _settled;
    private long _outstanding;
    private long _lastSendEnd;
    private string? _firstError;

    public RunState(int capacity)
    {
        _counts = new int[capacity];
        _settledFlags = new int[capacity];
        _status = new byte[capacity];
    }

    public int Capacity => _counts.Length;

    /// <summary>Messages settled so far.</summary>
    public long Settled => Interlocked.Read(ref _settled);

    /// <summary>Sends not yet returned.</summary>
    public long Outstanding => Interlocked.Read(ref _outstanding);

    /// <summary>Timestamp of the latest send completion.</summary>
    public long LastSendEnd => Interlocked.Read(ref _lastSendEnd);

    /// <summary>The first send exception of the run, if any.</summary>
    public string? FirstError => Volatile.Read(ref _firstError);

    /// <summary>Prepares for a run: message <c>seq</c> has <c>targets[seq % targets.Length]</c> recipients. A send of
    /// an earlier run that returns late (only after a stalled run) is ignored.</summary>
    public void Reset(int run, int[] targets, SemaphoreSlim window, bool settleOnSend)
    {
        Volatile.Write(ref _run, -1);
        var used = (int)_used;
        Array.Clear(_counts, 0, used);
        Array.Clear(_settledFlags, 0, used);
        Array.Clear(_status, 0, used);
        _used = 0;
        _targets = targets;
        _modulus = targets.Length;
        _window = window;
        _settleOnSend = settleOnSend;
        _settled = 0;
        _outstanding = 0;
        _lastSendEnd = 0;
        _firstError = null;
        Volatile.Write(ref _run, run);
    }

    public void BeginSend(long seq)
    {
        _used = seq + 1;
        _status[seq] = Pending;
        Interlocked.Increment(ref _outstanding);
    }

    public void SendReturned(int run, long seq)
    {
        if (run != Volatile.Read(ref _run))
        {
            return;
        }

        Volatile.Write(ref _status[seq], SentOk);
        if (_settleOnSend)
        {
            Settle(seq);
        }
    }

    public void SendThrew(int run, long seq, Exception exception)
    {
        if (run != Volatile.Read(ref _run))
        {
            return;
        }

        Volatile.Write(ref _status[seq], SendFailed);
        Interlocked.CompareExchange(ref _firstError, exception.GetType().Name + ": " + exception.Message, null);
        Settle(seq);
    }

    public void EndSend(int run)
    {
        if (run != Volatile.Read(ref _run))
        {
            return;
        }

        Interlocked.Exchange(ref _lastSendEnd, Stopwatch.GetTimestamp());
        Interlocked.Decrement(ref _outstanding);
    }

    /// <summary>A recipient has message <paramref name="seq"/> for the first time.</summary>
    public void Delivered(long seq)
    {
        if ((ulong)seq < (ulong)_counts.Length && Interlocked.Increment(ref _counts[seq]) == _targets[seq % _modulus])
        {
            Settle(seq);
        }
    }

    /// <summary>After the run: (sends that returned, sends that threw, sends that never returned, deliveries expected for
    /// the sends that returned, of those delivered, thrown sends that reached a recipient anyway).</summary>
    public (long Sent, long Failed, long Hung, long Expected, long DeliveredOfSent, long FailedButDelivered) Tally()
    {
        long sent = 0, failed = 0, hung = 0, expected = 0, delivered = 0, failedButDelivered = 0;
        for (long seq = 0; seq < _used; seq++)
        {
            switch (Volatile.Read(ref _status[seq]))
            {
                case SentOk:
                    sent++;
                    expected += _targets[seq % _modulus];
                    delivered += Volatile.Read(ref _counts[seq]);
                    break;
                case SendFailed:
                    failed++;
                    failedButDelivered += Volatile.Read(ref _counts[seq]) > 0 ? 1 : 0;
                    break;
                default:
                    hung++;
                    break;
            }
        }

        return (sent, failed, hung, expected, delivered, failedButDelivered);
    }

    private void Settle(long seq)
    {
        if (Interlocked.Exchange(ref _settledFlags[seq], 1) == 0)
        {
            Interlocked.Increment(ref _settled);
            try
            {
                _window?.Release();
            }
            catch (ObjectDisposedException)
            {
                // A late settle after its run ended.
            }
        }
    }
}
