using System.Diagnostics;

namespace SignalR.RedisStreams.Internal;

/// <summary>A packet waiting to be appended. Its sequence number is given when the publisher takes it, so a packet
/// that times out in the outbox leaves no hole in its sender's sequence. It is its own completion source (one object
/// less per send).</summary>
internal sealed class OutboxItem(StreamEntry entry, Activity? activity) : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
{
    private const int Waiting = 0;
    private const int Taken = 1;
    private const int Abandoned = 2;

    private int _state;

    public StreamEntry Entry { get; } = entry;
    public Activity? Activity { get; } = activity;
    public long EnqueuedAt { get; } = Stopwatch.GetTimestamp();

    /// <summary>Appends still to confirm before the sender is told: more than one when a send to several connections
    /// goes to the inboxes of several nodes. Used by the publisher's loop only.</summary>
    public int PartsLeft { get; set; } = 1;
    public Task Completion => Task;

    /// <summary>Neither taken by the publisher nor given up by its sender yet.</summary>
    public bool IsWaiting => Volatile.Read(ref _state) == Waiting;

    /// <summary>The publisher takes the item; false when its sender already gave up on it.</summary>
    public bool TryTake() => Interlocked.CompareExchange(ref _state, Taken, Waiting) == Waiting;

    /// <summary>The sender gives up; false when the publisher already took it (it will be published).</summary>
    public bool TryAbandon() => Interlocked.CompareExchange(ref _state, Abandoned, Waiting) == Waiting;

    public void Complete() => TrySetResult();

    public void Fail(Exception exception) => TrySetException(exception);
}
