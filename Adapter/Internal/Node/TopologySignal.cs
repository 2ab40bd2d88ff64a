using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Raised when a Redis Cluster's topology was reloaded and one of the node's streams' slots now maps to another server
/// (<see cref="ClusterTopologyWatch"/>: a replica promoted). A command StackExchange.Redis routed to the old master
/// before that waits in the old master's backlog until its timeout (5 s by default), though the new master is known,
/// and a retry waits out its backoff (up to 2 s): with this, the node's appends and reads stop waiting at the move and go
/// again, to the new master. Sending them again is safe whatever became of the first: the append script skips entries
/// that are there already and appends nothing out of order, and the answer to an abandoned read is dropped.
/// </summary>
internal sealed class TopologySignal : IDisposable
{
    private CancellationTokenSource _moved = new();
    private volatile bool _cluster;
    private int _moves;

    /// <summary>Cancelled at the next move. Taken before a command is sent, it says whether the command was sent before
    /// a move (<see cref="Abandonable"/>). On a single Redis (until <see cref="OnCluster"/>) it is
    /// <see cref="CancellationToken.None"/>, and a command is awaited as it is.</summary>
    public CancellationToken Token => _cluster ? Volatile.Read(ref _moved).Token : CancellationToken.None;

    /// <summary>The node's streams live on a Redis Cluster: from now on commands can be abandoned at a move.</summary>
    public void OnCluster() => _cluster = true;

    /// <summary>A slot moved: what was sent before stops being waited for.</summary>
    /// <remarks>The source replaced is cancelled, not disposed: a caller may still link to its token (it has no timer
    /// to release).</remarks>
    public void Raise()
    {
        Interlocked.Increment(ref _moves);
        Interlocked.Exchange(ref _moved, new CancellationTokenSource()).Cancel();
    }

    /// <summary>How many times a slot moved.</summary>
    public int Moves => Volatile.Read(ref _moves);

    public void Dispose() => _moved.Dispose();

    /// <summary>The answer to <paramref name="call"/>; or, when the topology moves before it comes (after
    /// <paramref name="sentBefore"/> was taken), a <see cref="SlotMovedException"/>: the caller's retry sends it again.
    /// The abandoned call's own outcome is observed and dropped. On a single Redis (<paramref name="sentBefore"/> cannot
    /// be cancelled) <paramref name="call"/> itself, with nothing wrapped around it.</summary>
    public static Task<T> Abandonable<T>(Task<T> call, CancellationToken sentBefore)
        => sentBefore.CanBeCanceled && !call.IsCompleted ? AbandonOnMoveAsync(call, sentBefore) : call;

    private static async Task<T> AbandonOnMoveAsync<T>(Task<T> call, CancellationToken sentBefore)
    {
        try
        {
            return await call.WaitAsync(sentBefore);
        }
        catch (OperationCanceledException) when (sentBefore.IsCancellationRequested)
        {
            if (call.IsCompleted)
            {
                return await call;
            }
            _ = call.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            throw new SlotMovedException();
        }
    }

    /// <summary>A retry's backoff: <paramref name="delay"/>, or less when a slot moves meanwhile.</summary>
    public async Task DelayAsync(TimeSpan delay, CancellationToken stopping)
    {
        using var wake = CancellationTokenSource.CreateLinkedTokenSource(stopping, Token);
        try
        {
            await Task.Delay(delay, wake.Token);
        }
        catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
        {
            // Moved: retry now.
        }
    }
}

/// <summary>A command was abandoned because the Redis Cluster's topology moved its slot to another master while it
/// waited (<see cref="TopologySignal"/>); it is sent again.</summary>
internal sealed class SlotMovedException()
    : RedisException("The Redis Cluster's topology changed while the command waited on the old master of its slot; it is sent again, to the new master.");
