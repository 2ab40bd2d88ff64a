using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;

namespace SignalR.RedisStreams.Internal;

/// <summary>A client-result invocation this node waits for. It ends once: completed by the client's answer, or failed.</summary>
internal abstract class PendingInvocation(string connectionId, string node)
{
    private CancellationTokenRegistration _cancellation;

    public string ConnectionId { get; } = connectionId;

    /// <summary>The node holding the connection; empty when it is this one.</summary>
    public string Node { get; } = node;

    public abstract Type ResultType { get; }

    /// <summary>Ends the wait on the caller's token (set once, right after creation).</summary>
    public void WatchCancellation(Action onCanceled, CancellationToken cancellationToken)
        => _cancellation = cancellationToken.UnsafeRegister(static state => ((Action)state!)(), onCanceled);

    /// <summary>Stops watching the token of an invocation that was never sent (its caller got the send's error).</summary>
    public void Abandon() => _cancellation.Unregister();

    public void Complete(CompletionMessage completion)
    {
        _cancellation.Unregister();
        CompleteCore(completion);
    }

    public void Fail(Exception exception)
    {
        _cancellation.Unregister();
        FailCore(exception);
    }

    protected abstract void CompleteCore(CompletionMessage completion);

    protected abstract void FailCore(Exception exception);
}

internal sealed class PendingInvocation<T>(string connectionId, string node) : PendingInvocation(connectionId, node)
{
    private readonly TaskCompletionSource<T> _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<T> Task => _tcs.Task;

    public override Type ResultType => typeof(T);

    protected override void CompleteCore(CompletionMessage completion)
    {
        if (completion.Error is { } error)
        {
            _tcs.TrySetException(new HubException(error));
        }
        else if (completion.Result is null)
        {
            _tcs.TrySetResult(default!);
        }
        else if (completion.Result is T value)
        {
            _tcs.TrySetResult(value);
        }
        else
        {
            _tcs.TrySetException(new InvalidDataException(
                $"The client returned a {completion.Result.GetType().Name} where a {typeof(T).Name} was expected."));
        }
    }

    protected override void FailCore(Exception exception) => _tcs.TrySetException(exception);
}
