using System.Diagnostics;

namespace Benchmarks.Soak;

/// <summary>The faults of the soak run.</summary>
internal enum SoakFault
{
    /// <summary><c>SHUTDOWN</c> (AOF fsynced), down a few seconds, started again with its data.</summary>
    RedisRestartWithData,

    /// <summary>SIGKILL, data files deleted, down a few seconds, started again empty.</summary>
    RedisRestartEmpty,

    /// <summary>SIGSTOP to redis-server for a few seconds, then SIGCONT.</summary>
    RedisFreeze,

    /// <summary><c>CLIENT KILL TYPE normal</c>: every client connection of Redis cut at once.</summary>
    ClientKill,

    /// <summary>A node process SIGKILLed, then a new one started in its place (its clients replaced).</summary>
    NodeKill,

    /// <summary>A node frozen (SIGSTOP) long enough for the stream to be trimmed past what it had read.</summary>
    SlowReader,
}

/// <summary>When one fault was injected (Stopwatch timestamps).</summary>
internal sealed record FaultWindow(SoakFault Fault, long Begin, long End, string Detail, int Node);

/// <summary>The counts of one row of the account: messages sent while a fault kind was active (or none was).</summary>
internal sealed class AccountRow
{
    public long Sent { get; set; }

    public long Failed { get; set; }

    public long FailedButDelivered { get; set; }

    public long Expected { get; set; }

    public long Delivered { get; set; }

    public long Lost { get; set; }

    /// <summary>Expected deliveries missed by a receiver whose node reported a gap from the sender's node afterwards.</summary>
    public long MissedInReportedGap { get; set; }

    /// <summary>Expected deliveries Redis lost in a restart without data while their sender's node died before it could
    /// publish them again (the backplane does not promise those: README, "Not promised").</summary>
    public long LostWithSenderNode { get; set; }

    public long Duplicated { get; set; }

    public long Reordered { get; set; }
}

/// <summary>
/// The full account of a soak run: for every message a client sent and the server acknowledged, which clients had to
/// get it and whether they did, exactly once and in order. A receiver must get a message when it was connected and in
/// its room before the send began and it is addressed to it (All; its room; its user; its connection). A receiver whose
/// node was killed must have every such message up to the last one it got from that sender (its tail, in flight when
/// the node died, is not promised). A message a live receiver lacks counts as <em>lost</em>, unless the receiver's node
/// reported a gap from the sender's node, in a stream the message may have taken (the shared stream; for a direct
/// message also its target's inbox), after the send (trimming past a slow reader, or entries Redis lost beyond the
/// replay window): then it is <em>missed in a reported gap</em>, which the backplane promises to report, not to recover.
/// Each message is counted in the row of every fault kind active when it was sent (from a second before the fault
/// began to <see cref="Aftermath"/> after it ended), or in "no fault" when none was.
/// </summary>
internal sealed class SoakAccount
{
    public static readonly TimeSpan Aftermath = TimeSpan.FromSeconds(10);

    public Dictionary<string, AccountRow> Rows { get; } = new(StringComparer.Ordinal);

    public AccountRow Total { get; } = new();

    /// <summary>The first lost deliveries, described (receiver, sender, number, kind).</summary>
    public List<string> LostExamples { get; } = [];

    /// <summary>The first reordered arrivals, described (receiver, sender, numbers, kinds).</summary>
    public List<string> ReorderExamples { get; } = [];

    /// <summary>Per node incarnation, the distinct messages its clients missed in a reported gap.</summary>
    public Dictionary<NodeProcess, HashSet<long>> MissedByNode { get; } = [];

    public const string NoFault = "no fault active";

    public static string RowName(SoakFault fault) => fault switch
    {
        SoakFault.RedisRestartWithData => "Redis restart with data",
        SoakFault.RedisRestartEmpty => "Redis restart without data",
        SoakFault.RedisFreeze => "Redis SIGSTOP",
        SoakFault.ClientKill => "CLIENT KILL",
        SoakFault.NodeKill => "node killed and restarted",
        SoakFault.SlowReader => "slow reader past trimming",
        _ => fault.ToString(),
    };

    public static SoakAccount Build(IReadOnlyList<SentMessage> sent, IReadOnlyList<SoakClient> clients, IReadOnlyList<FaultWindow> faults)
    {
        var account = new SoakAccount();
        foreach (var fault in Enum.GetValues<SoakFault>())
        {
            account.Rows[RowName(fault)] = new AccountRow();
        }

        account.Rows[NoFault] = new AccountRow();
        var before = Stopwatch.Frequency;
        var after = (long)(Aftermath.TotalSeconds * Stopwatch.Frequency);
        var rowsOf = new Dictionary<long, List<AccountRow>>(sent.Count);
        var byKey = new Dictionary<long, SentMessage>(sent.Count);
        foreach (var message in sent)
        {
            var key = SoakClient.Key(message.Sender, message.Seq);
            byKey[key] = message;
            var rows = new List<AccountRow> { account.Total };
            foreach (var row in faults.Where(f => message.Start >= f.Begin - before && message.Start <= f.End + after).Select(f => RowName(f.Fault)).Distinct())
            {
                rows.Add(account.Rows[row]);
            }

            if (rows.Count == 1)
            {
                rows.Add(account.Rows[NoFault]);
            }

            rowsOf[key] = rows;
            foreach (var row in rows)
            {
                if (message.Outcome == 1)
                {
                    row.Sent++;
                }
                else if (message.Outcome == 2)
                {
                    row.Failed++;
                }
            }
        }

        var failedDelivered = new HashSet<long>();
        foreach (var client in clients)
        {
            var arrivals = client.Arrivals();
            var seen = new HashSet<long>();
            var highest = new Dictionary<int, long>();
            foreach (var key in arrivals)
            {
                var sender = (int)(key >> 32);
                var seq = key & 0xFFFF_FFFF;
                var rows = rowsOf.GetValueOrDefault(key) ?? [account.Total];
                if (!seen.Add(key))
                {
                    rows.ForEach(r => r.Duplicated++);
                    continue;
                }

                if (highest.TryGetValue(sender, out var max) && seq < max)
                {
                    rows.ForEach(r => r.Reordered++);
                    if (account.ReorderExamples.Count < 20)
                    {
                        var late = byKey.GetValueOrDefault(key);
                        var early = byKey.GetValueOrDefault(SoakClient.Key(sender, max));
                        account.ReorderExamples.Add(
                            $"client {client.Id} on node {client.Node.Index}.{client.Node.Incarnation} got #{seq} ({late?.Kind}, sender on node {late?.SenderNode}) " +
                            $"after #{max} ({early?.Kind}) from client {sender}; sent {(early is null || late is null ? "?" : ((early.Start - late.Start) * 1000.0 / Stopwatch.Frequency).ToString("0", System.Globalization.CultureInfo.InvariantCulture))} ms apart");
                    }
                }
                else
                {
                    highest[sender] = seq;
                }

                if (byKey.TryGetValue(key, out var m) && m.Outcome == 2 && failedDelivered.Add(key))
                {
                    rows.ForEach(r => r.FailedButDelivered++);
                }
            }

            var closed = client.ClosedAt;
            foreach (var message in sent)
            {
                if (message.Outcome != 1 || message.Start <= client.ReadyAt || !IsFor(message, client))
                {
                    continue;
                }

                if (closed != 0 && (message.Start >= closed || message.Seq > highest.GetValueOrDefault(message.Sender)))
                {
                    // Sent after the receiver's node died, or in its tail: not promised.
                    continue;
                }

                var rows = rowsOf[SoakClient.Key(message.Sender, message.Seq)];
                rows.ForEach(r => r.Expected++);
                if (seen.Contains(SoakClient.Key(message.Sender, message.Seq)))
                {
                    rows.ForEach(r => r.Delivered++);
                }
                else if (client.Node.Gaps.Any(g => g.SenderNode == message.SenderBackplaneId && g.At >= message.Start && MayHaveTaken(message, g.InInbox)))
                {
                    rows.ForEach(r => r.MissedInReportedGap++);
                    if (!account.MissedByNode.TryGetValue(client.Node, out var missed))
                    {
                        account.MissedByNode[client.Node] = missed = [];
                    }

                    missed.Add(SoakClient.Key(message.Sender, message.Seq));
                }
                else if (LostWithItsNode(message, faults))
                {
                    rows.ForEach(r => r.LostWithSenderNode++);
                }
                else
                {
                    rows.ForEach(r => r.Lost++);
                    if (account.LostExamples.Count < 20)
                    {
                        account.LostExamples.Add($"client {client.Id} on node {client.Node.Index}.{client.Node.Incarnation}{(closed != 0 ? " (killed later)" : "")} " +
                                                 $"lacks #{message.Seq} ({message.Kind}) from client {message.Sender} on node {message.SenderNode}, " +
                                                 $"sent at {WallClock(message.Start):HH:mm:ss.fff} (got up to #{highest.GetValueOrDefault(message.Sender)} from that client)");
                    }
                }
            }
        }

        return account;
    }

    /// <summary>The local wall-clock time of a <see cref="Stopwatch"/> timestamp (UTC, as the log lines show it).</summary>
    private static DateTime WallClock(long timestamp) => DateTime.UtcNow - Stopwatch.GetElapsedTime(timestamp);

    /// <summary>Redis restarted without its data after the message was sent, and the sender's node was killed after the
    /// send and before 15 s after that restart: the node died before it could publish its replay window again (killed
    /// after the restart), or before the restart, when nobody is left to republish what Redis lost (a receiver frozen
    /// until then never read it).</summary>
    private static bool LostWithItsNode(SentMessage message, IReadOnlyList<FaultWindow> faults)
    {
        var second = Stopwatch.Frequency;
        return faults.Any(w => w.Fault == SoakFault.RedisRestartEmpty && w.Begin >= message.Start
            && faults.Any(k => k.Fault == SoakFault.NodeKill && k.Node == message.SenderNode && k.Begin >= message.Start
                && k.Begin <= w.End + (15 * second)));
    }

    /// <summary>Whether the message may have taken the inbox (<paramref name="inbox"/>) or the shared stream. Every kind
    /// but a direct message takes the shared stream. A direct message takes its target's inbox when the sender's node
    /// knows where the target is connected, and the shared stream when it does not (the connection's entry in Redis is
    /// not there yet, or was lost in a restart without data and not written again yet): the harness cannot tell which,
    /// so a gap in either counts for it.</summary>
    private static bool MayHaveTaken(SentMessage message, bool inbox) => message.Kind == SendKind.Direct || !inbox;

    private static bool IsFor(SentMessage message, SoakClient client) => message.Kind switch
    {
        SendKind.All => true,
        SendKind.Room => message.Address == client.Room,
        SendKind.User or SendKind.Direct => message.Target == client.Id,
        _ => false,
    };
}
