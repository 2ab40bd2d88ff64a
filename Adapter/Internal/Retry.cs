namespace SignalR.RedisStreams.Internal;

/// <summary>What the node's loops treat as "Redis is away, try again", and how long they wait before they do.</summary>
internal static class Retry
{
    /// <summary>Errors of an unreachable, restarting or timed-out Redis (as opposed to bugs).</summary>
    public static bool IsTransient(Exception ex)
        => ex is StackExchange.Redis.RedisException or TimeoutException or IOException or ObjectDisposedException;

    /// <summary>Exponential backoff from 50 ms to 2 s, with jitter (half fixed, half random) so that nodes do not retry in step.</summary>
    public static TimeSpan Backoff(int attempt)
    {
        var ms = Math.Min(2000, 50 * (1 << Math.Min(attempt - 1, 6)));
        return TimeSpan.FromMilliseconds(ms / 2 + Random.Shared.Next(ms / 2 + 1));
    }
}
