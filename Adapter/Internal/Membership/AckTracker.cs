using System.Collections.Concurrent;

namespace SignalR.RedisStreams.Internal;

/// <summary>Acknowledgements this node waits for: another node confirming a group change it was asked to make.
/// Each waits until acknowledged, forgotten (the caller timed out) or failed because its node went away.</summary>
internal sealed class AckTracker
{
    private readonly ConcurrentDictionary<long, (TaskCompletionSource Completion, string Node)> _pending = new();
    private long _lastId;

    public int Count => _pending.Count;

    /// <summary>A new acknowledgement expected from <paramref name="node"/>: its id (sent in the request) and the task
    /// that completes when the node answers.</summary>
    public (long Id, Task Acknowledged) Create(string node)
    {
        var id = Interlocked.Increment(ref _lastId);
        var completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = (completion, node);
        return (id, completion.Task);
    }

    /// <summary>The node answered; an unknown id (already forgotten) is ignored.</summary>
    public void Complete(long id)
    {
        if (_pending.TryRemove(id, out var ack))
        {
            ack.Completion.TrySetResult();
        }
    }

    /// <summary>The caller stopped waiting (it timed out or was cancelled).</summary>
    public void Forget(long id) => _pending.TryRemove(id, out _);

    /// <summary>The node went away: everything it was to acknowledge fails with an <see cref="IOException"/>.</summary>
    public void FailNode(string node)
    {
        foreach (var (id, ack) in _pending)
        {
            if (ack.Node == node && _pending.TryRemove(id, out _))
            {
                ack.Completion.TrySetException(new IOException($"Node '{node}' went away before acknowledging."));
            }
        }
    }
}
