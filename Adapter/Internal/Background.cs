namespace SignalR.RedisStreams.Internal;

/// <summary>
/// Starts the node's long-lived work (its connections, reader, publisher, heartbeats, sweeps) without the
/// <see cref="ExecutionContext"/> of whoever happened to start it. An async loop carries its starter's async-local state
/// for its whole life: when the first caller is a request or a hub invocation, that is the request's
/// <see cref="System.Diagnostics.Activity"/> (the implicit parent of spans started without an explicit one) and its
/// logging scopes, on every log line of the loops; and the Redis client's socket loop would run each completion under it.
/// </summary>
internal static class Background
{
    /// <summary>Calls <paramref name="start"/> (an async method, or one that hands its work to <c>Task.Run</c>) with the
    /// flow of the execution context suppressed: what it awaits and queues runs with a clean context. Its synchronous
    /// part still runs here, on the caller's thread.</summary>
    public static Task Start(Func<Task> start)
    {
        if (ExecutionContext.IsFlowSuppressed())
        {
            return start();
        }
        using (ExecutionContext.SuppressFlow())
        {
            return start();
        }
    }

    /// <summary>Runs <paramref name="work"/> on the thread pool with a clean execution context; unlike
    /// <see cref="Start"/>, none of it runs on the caller's thread (nor with its flow suppressed).</summary>
    public static Task Run(Func<Task> work) => Start(() => Task.Run(work));
}
