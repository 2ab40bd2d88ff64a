using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using AppHost.Tests.Infrastructure;
using Microsoft.AspNetCore.SignalR.Client;

namespace AppHost.Tests.Chaos;

/// <summary>
/// Chat traffic through the balancer for chaos tests. On every node: a sender, and two receivers — one of them the
/// user <c>bob-{label}</c> — who all joined the room <c>room-{label}</c>. Each sender invokes, at a steady rate,
/// <c>Send</c> (to all), <c>SendToRoom</c>, <c>SendToUser(bob)</c> and <c>SendToConnection</c> (to amy's connection on
/// the next node: a packet addressed to one node) in turn with numbered texts <c>{label}|{sender}|{k}</c>, without
/// waiting for each to finish, so several are queued while Redis is away. A send counts as sent when its hub invocation
/// completed (the packet is in Redis), as failed when it threw. Order is checked per sender over all kinds: the direct
/// messages travel in the target node's inbox, the others in the shared stream, and the node merges the two back into
/// send order.
/// </summary>
internal sealed class ChaosTraffic : IAsyncDisposable
{
    private readonly string _label;
    private readonly List<Sender> _senders = [];
    private readonly List<Receiver> _receivers = [];

    private ChaosTraffic(string label) => _label = label;

    public IReadOnlyList<Sender> Senders => _senders;

    public int Issued => _senders.Sum(s => s.Issued);

    public static async Task<ChaosTraffic> StartAsync(Uri balancerUrl, IReadOnlyList<string> nodes, string label, CancellationToken cancellationToken)
    {
        var traffic = new ChaosTraffic(label);
        try
        {
            foreach (var node in nodes)
            {
                foreach (var user in new[] { "bob-" + label, "amy-" + label })
                {
                    var connection = await ChatClients.ConnectToNodeAsync(balancerUrl, node, user, cancellationToken);
                    var receiver = new Receiver(connection, node, user, label);
                    traffic._receivers.Add(receiver);
                    await connection.InvokeAsync("JoinRoom", traffic.Room, cancellationToken);
                }
                var senderConnection = await ChatClients.ConnectToNodeAsync(balancerUrl, node, "sender-" + label, cancellationToken);
                traffic._senders.Add(new Sender(senderConnection, node, $"s{traffic._senders.Count + 1}", traffic));
            }
            // Sender i sends its direct messages to amy on the next node.
            var amys = traffic._receivers.Where(r => r.User == "amy-" + label).ToList();
            for (var i = 0; i < traffic._senders.Count; i++)
            {
                traffic._senders[i].DirectTarget = amys[(i + 1) % amys.Count];
            }
        }
        catch
        {
            await traffic.DisposeAsync();
            throw;
        }
        return traffic;
    }

    public string Room => "room-" + _label;

    public string Bob => "bob-" + _label;

    public string Text(Sender sender, int k) => string.Create(CultureInfo.InvariantCulture, $"{_label}|{sender.Name}|{k}");

    /// <summary>Sends <paramref name="count"/> messages per sender, one per <paramref name="interval"/> each, and returns
    /// when every invocation has finished (sent or failed).</summary>
    public Task SendAsync(int count, TimeSpan interval, CancellationToken cancellationToken)
        => Task.WhenAll(_senders.Select(s => s.RunAsync(count, interval, cancellationToken)));

    /// <summary>Who must receive message k of <paramref name="sender"/>: all receivers for Send and SendToRoom, bob's
    /// connections for SendToUser, the sender's direct target for SendToConnection.</summary>
    public bool MustReceive(Sender sender, Receiver receiver, int k) => Kind(k) switch
    {
        2 => receiver.User == Bob,
        3 => receiver == sender.DirectTarget,
        _ => true,
    };

    public static int Kind(int k) => k % 4;

    /// <summary>The channel message k takes: 0 the shared stream (all, room, user), 1 the target node's inbox.</summary>
    private static int Channel(int k) => Kind(k) == 3 ? 1 : 0;

    /// <summary>Waits until every live receiver holds every message it must (or the deadline passes), then counts.</summary>
    public async Task<ChaosReport> SettleAsync(TimeSpan deadline, IReadOnlyCollection<string>? deadNodes = null)
    {
        var live = _receivers.Where(r => deadNodes is null || !deadNodes.Contains(r.Node)).ToList();
        bool Complete() => live.All(r => _senders.All(s => s.Succeeded.Where(k => MustReceive(s, r, k)).All(k => r.Has(s.Name, k))));
        try
        {
            await Eventually.TrueAsync(() => Task.FromResult(Complete()), deadline, "every live receiver has every sent message");
        }
        catch (TimeoutException)
        {
            // what is missing is counted as lost below
        }

        var report = new ChaosReport();
        foreach (var receiver in live)
        {
            var texts = receiver.Texts;
            report.Received += texts.Count;
            report.Duplicates += texts.Count - texts.Distinct().Count();
            foreach (var sender in _senders)
            {
                var numbers = texts.Select(t => t.Split('|')).Where(p => p[1] == sender.Name).Select(p => int.Parse(p[2], CultureInfo.InvariantCulture)).ToList();
                var expected = sender.Succeeded.Where(k => MustReceive(sender, receiver, k)).ToList();
                report.Expected += expected.Count;
                report.ExpectedDirect += expected.Count(k => Channel(k) == 1);
                foreach (var k in expected.Where(k => !numbers.Contains(k)))
                {
                    report.Lost++;
                    report.LostDirect += Channel(k);
                    report.Missed(receiver.Node, sender.Name, k);
                    if (report.LostSamples.Count < 20)
                    {
                        report.LostSamples.Add($"{sender.Name}|{k} (kind {Kind(k)}) not at {receiver.User}@{receiver.Node}");
                    }
                }
                report.Unconfirmed += numbers.Distinct().Count(k => !sender.Succeeded.Contains(k));
                for (var i = 1; i < numbers.Count; i++)
                {
                    if (numbers[i] < numbers[i - 1])
                    {
                        report.Reordered++;
                    }
                }
            }
        }
        report.Sent = _senders.Sum(s => s.Succeeded.Count);
        report.FailedToSend = _senders.Sum(s => s.Failed);
        report.LongestSend = _senders.Max(s => s.LongestSend);
        return report;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var connection in _receivers.Select(r => r.Connection).Concat(_senders.Select(s => s.Connection)))
        {
            await connection.DisposeAsync();
        }
    }

    internal sealed class Receiver
    {
        private readonly ConcurrentQueue<string> _texts = new();
        private readonly ConcurrentDictionary<string, byte> _seen = new(StringComparer.Ordinal);

        public Receiver(HubConnection connection, string node, string user, string label)
        {
            Connection = connection;
            Node = node;
            User = user;
            connection.On<ChatMessageDto>("message", message =>
            {
                if (message.Text.StartsWith(label + "|", StringComparison.Ordinal))
                {
                    _texts.Enqueue(message.Text);
                    _seen.TryAdd(message.Text[(label.Length + 1)..], 0); // "{sender}|{k}"
                }
            });
        }

        public HubConnection Connection { get; }

        public string Node { get; }

        public string User { get; }

        public IReadOnlyList<string> Texts => [.. _texts];

        public bool Has(string sender, int k) => _seen.ContainsKey(sender + "|" + k.ToString(CultureInfo.InvariantCulture));
    }

    internal sealed class Sender(HubConnection connection, string node, string name, ChaosTraffic traffic)
    {
        private readonly ConcurrentBag<int> _succeeded = [];
        private int _issued;
        private int _failed;
        private long _longestSendTicks;

        public HubConnection Connection { get; } = connection;

        public string Node { get; } = node;

        public string Name { get; } = name;

        /// <summary>The receiver (on another node) this sender's direct messages go to.</summary>
        public Receiver? DirectTarget { get; set; }

        public int Issued => Volatile.Read(ref _issued);

        public int Failed => Volatile.Read(ref _failed);

        public IReadOnlyCollection<int> Succeeded => [.. _succeeded];

        /// <summary>The longest a hub invocation of this sender took to complete or fail: how long its sends stalled.</summary>
        public TimeSpan LongestSend => TimeSpan.FromTicks(Interlocked.Read(ref _longestSendTicks));

        public async Task RunAsync(int count, TimeSpan interval, CancellationToken cancellationToken)
        {
            var sends = new List<Task>(count);
            using var timer = new PeriodicTimer(interval);
            for (var k = 1; k <= count; k++)
            {
                var text = traffic.Text(this, k);
                var invocation = Kind(k) switch
                {
                    0 => Connection.InvokeAsync("Send", text, cancellationToken),
                    1 => Connection.InvokeAsync("SendToRoom", traffic.Room, text, cancellationToken),
                    2 => Connection.InvokeAsync("SendToUser", traffic.Bob, text, cancellationToken),
                    _ => Connection.InvokeAsync("SendToConnection", DirectTarget!.Connection.ConnectionId, text, cancellationToken),
                };
                sends.Add(Track(k, invocation));
                Interlocked.Increment(ref _issued);
                await timer.WaitForNextTickAsync(cancellationToken);
            }
            await Task.WhenAll(sends);
        }

        private async Task Track(int k, Task invocation)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                await invocation;
                _succeeded.Add(k);
            }
#pragma warning disable CA1031 // any failure of the invocation makes the send a failed one
            catch (Exception)
#pragma warning restore CA1031
            {
                // the hub threw (publish timeout), or the sender's own node went away (socket closed, ...)
                Interlocked.Increment(ref _failed);
            }
            finally
            {
                var took = Stopwatch.GetElapsedTime(started).Ticks;
                for (var longest = Interlocked.Read(ref _longestSendTicks); took > longest;)
                {
                    var seen = Interlocked.CompareExchange(ref _longestSendTicks, took, longest);
                    if (seen == longest)
                    {
                        break;
                    }
                    longest = seen;
                }
            }
        }
    }
}

/// <summary>What the receivers got, per fault.</summary>
internal sealed class ChaosReport
{
    private readonly Dictionary<string, HashSet<(string Sender, int K)>> _missed = new(StringComparer.Ordinal);

    public int Sent { get; set; }
    public int FailedToSend { get; set; }
    public int Expected { get; set; }
    public int Received { get; set; }
    public int Lost { get; set; }
    public int Duplicates { get; set; }
    public int Reordered { get; set; }

    /// <summary>Of <see cref="Expected"/> and <see cref="Lost"/>: the direct messages (addressed to one node's inbox).</summary>
    public int ExpectedDirect { get; set; }
    public int LostDirect { get; set; }

    /// <summary>Received, though the sender's invocation did not complete (its node was killed after publishing).</summary>
    public int Unconfirmed { get; set; }

    /// <summary>The longest a send (hub invocation) took: how long sends stalled at worst.</summary>
    public TimeSpan LongestSend { get; set; }

    /// <summary>Per chat node: the packets (sender, number) that one of its receivers lacks, each once however many of
    /// the node's receivers lack it; what the node would have had to report as a gap.</summary>
    public IReadOnlyDictionary<string, int> MissedPackets => _missed.ToDictionary(n => n.Key, n => n.Value.Count, StringComparer.Ordinal);

    public void Missed(string node, string sender, int k)
    {
        if (!_missed.TryGetValue(node, out var packets))
        {
            _missed[node] = packets = [];
        }
        packets.Add((sender, k));
    }

    /// <summary>Up to 20 of the lost deliveries, for the failure message.</summary>
    public List<string> LostSamples { get; } = [];

    public override string ToString() =>
        $"sent {Sent}, failed to send {FailedToSend}, expected deliveries {Expected} (direct {ExpectedDirect}), received {Received}, " +
        $"lost {Lost} (direct {LostDirect}), " +
        $"duplicates {Duplicates}, reordered {Reordered}, delivered without confirmation {Unconfirmed}, longest send {LongestSend.TotalMilliseconds:0} ms" +
        (LostSamples.Count > 0 ? "; lost: " + string.Join(", ", LostSamples) : "");
}
