namespace AppHost.Tests.Infrastructure;

/// <summary>Waiting for a condition with a deadline: the only way tests wait (no sleeps as synchronisation).</summary>
public static class Eventually
{
    /// <summary>Completes when <paramref name="task"/> does, or throws <see cref="TimeoutException"/> naming <paramref name="what"/>.</summary>
    public static async Task<T> WithinAsync<T>(Task<T> task, TimeSpan timeout, string what)
    {
        ArgumentNullException.ThrowIfNull(task);
        try
        {
            return await task.WaitAsync(timeout);
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"Timed out after {timeout.TotalSeconds:0.#} s waiting for: {what}", ex);
        }
    }

    /// <summary>Polls <paramref name="condition"/> every <paramref name="pollInterval"/> (default 100 ms) until true, or throws.</summary>
    public static async Task TrueAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, TimeSpan? pollInterval = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        using var deadline = new CancellationTokenSource(timeout);
        using var timer = new PeriodicTimer(pollInterval ?? TimeSpan.FromMilliseconds(100));
        Exception? last = null;
        do
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                last = ex;
            }
        }
        while (await WaitForTickAsync(timer, deadline.Token));

        throw new TimeoutException($"Timed out after {timeout.TotalSeconds:0.#} s waiting for: {what}", last);
    }

    private static async Task<bool> WaitForTickAsync(PeriodicTimer timer, CancellationToken cancellationToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
