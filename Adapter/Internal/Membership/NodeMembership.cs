using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Which nodes are alive: any entry read from a node counts as hearing it; this node announces itself every
/// <c>HeartbeatInterval</c>; a node that said goodbye, or stayed silent for <c>HeartbeatTimeout</c> while this node
/// could hear, is gone, and whoever waits on it is told (once per node). A node silent too long comes back when it is
/// heard again (it was frozen, or cut off); a node that said goodbye does not: node ids are new with each start, so
/// anything read from it after its goodbye (an entry it appended just after, however that happened) is no sign of life.
/// </summary>
internal sealed class NodeMembership
{
    private readonly string _self;
    private readonly RedisStreamsOptions _options;
    private readonly ILogger _logger;
    private readonly Action<string> _nodeGone;
    private readonly ConcurrentDictionary<string, long> _lastHeard = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _gone = new(StringComparer.Ordinal);

    // Nodes that said goodbye, with when this node read it; forgotten a while later (what a node appended just after
    // its goodbye is read just after it).
    private readonly ConcurrentDictionary<string, long> _saidGoodbye = new(StringComparer.Ordinal);

    public NodeMembership(string self, RedisStreamsOptions options, ILogger logger, Action<string> nodeGone)
    {
        _self = self;
        _options = options;
        _logger = logger;
        _nodeGone = nodeGone;
    }

    /// <summary>Nodes heard from within the heartbeat timeout (this one included once its reader saw its own heartbeat).</summary>
    public int LiveCount => _lastHeard.Count;

    public IReadOnlyCollection<string> LiveNodes => (IReadOnlyCollection<string>)_lastHeard.Keys;

    /// <summary>An entry from <paramref name="node"/> was read.</summary>
    public void Heard(string node) => Heard(node, Stopwatch.GetTimestamp());

    internal void Heard(string node, long now)
    {
        if (_saidGoodbye.ContainsKey(node))
        {
            return;
        }
        if (_lastHeard.TryAdd(node, now))
        {
            _gone.TryRemove(node, out _);
            if (node != _self)
            {
                Log.NodeJoined(_logger, node);
            }
        }
        else
        {
            _lastHeard[node] = now;
        }
    }

    /// <summary>Starts tracking a node this node is about to wait on, so that it is declared gone if it never speaks.</summary>
    public void Expect(string node)
    {
        if (!_saidGoodbye.ContainsKey(node))
        {
            _lastHeard.TryAdd(node, Stopwatch.GetTimestamp());
        }
    }

    /// <summary>True for a node declared gone and not heard from since.</summary>
    public bool IsGone(string node) => _gone.ContainsKey(node);

    /// <summary>After the reader was cut off, nobody could be heard: every node gets a fresh timeout.</summary>
    public void ResetClock()
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var node in _lastHeard.Keys)
        {
            _lastHeard[node] = now;
        }
    }

    /// <summary>A node announced it stops.</summary>
    public void SaidGoodbye(string node)
    {
        if (node != _self)
        {
            _saidGoodbye[node] = Stopwatch.GetTimestamp();
            Remove(node, "said goodbye");
        }
    }

    /// <summary>Declares gone every other node silent for longer than the heartbeat timeout at <paramref name="now"/>.</summary>
    public void DropSilentNodes(long now)
    {
        foreach (var (node, readAt) in _saidGoodbye)
        {
            if (Stopwatch.GetElapsedTime(readAt, now) > 3 * _options.HeartbeatTimeout)
            {
                _saidGoodbye.TryRemove(node, out _);
            }
        }

        foreach (var (node, lastHeard) in _lastHeard)
        {
            if (node != _self && Stopwatch.GetElapsedTime(lastHeard, now) > _options.HeartbeatTimeout)
            {
                Remove(node, $"silent for more than {_options.HeartbeatTimeout}");
            }
        }
    }

    /// <summary>The heartbeat loop: from the moment the reader is positioned, announces this node (and samples the
    /// reader's lag) every interval, and judges the others, only while this node can hear them.</summary>
    public async Task RunHeartbeatsAsync(Task readerPositioned, Func<Task> announce, Func<TimeSpan> sinceLastRead, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval);
        try
        {
            await readerPositioned.WaitAsync(stopping);
            do
            {
                try
                {
                    await announce();
                }
                catch (Exception ex) when (Retry.IsTransient(ex))
                {
                    Log.HeartbeatFailed(_logger, ex);
                }

                if (sinceLastRead() < _options.ReadBlockTime + TimeSpan.FromSeconds(2))
                {
                    DropSilentNodes(Stopwatch.GetTimestamp());
                }
            }
            while (await timer.WaitForNextTickAsync(stopping));
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    private void Remove(string node, string reason)
    {
        if (!_lastHeard.TryRemove(node, out _))
        {
            return;
        }
        _gone[node] = true;
        Log.NodeGone(_logger, node, reason);
        _nodeGone(node);
    }
}
