namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>What a test client has received, in arrival order, and a wait with a deadline for an arrival that matches.</summary>
/// <typeparam name="T">What arrives.</typeparam>
public sealed class Arrivals<T>
    where T : class
{
    private readonly Lock _gate = new();
    private readonly List<T> _items = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Everything received so far, in arrival order.</summary>
    public IReadOnlyList<T> Snapshot()
    {
        lock (_gate)
        {
            return [.. _items];
        }
    }

    /// <summary>Records an arrival and wakes the waiters.</summary>
    public void Add(T item)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            _items.Add(item);
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    /// <summary>Waits until an arrival matches <paramref name="match"/> (maybe already) and returns the first such; after
    /// <paramref name="timeout"/> throws <see cref="TimeoutException"/> with <paramref name="describeTimeout"/>'s message.</summary>
    public async Task<T> WaitForAsync(Func<T, bool> match, TimeSpan timeout, Func<string> describeTimeout)
    {
        ArgumentNullException.ThrowIfNull(match);
        ArgumentNullException.ThrowIfNull(describeTimeout);
        using var deadline = new CancellationTokenSource(timeout);
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                var found = _items.FirstOrDefault(match);
                if (found is not null)
                {
                    return found;
                }

                changed = _changed.Task;
            }

            try
            {
                await changed.WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException(describeTimeout());
            }
        }
    }
}
