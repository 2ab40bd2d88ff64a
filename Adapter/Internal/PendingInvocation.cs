using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;

namespace SignalR.RedisStreams.Internal;

/// <summary>A client-result invocation this node waits for.</summary>
internal abstract class PendingInvocation(string connectionId)
{
    public string ConnectionId { get; } = connectionId;

    /// <summary>The node holding the connection; empty when it is local.</summary>
    public string Node { get; set; } = "";

    public abstract Type ResultType { get; }

    public abstract void Complete(CompletionMessage completion);

    public abstract void Fail(Exception exception);
}

internal sealed class PendingInvocation<T>(string connectionId) : PendingInvocation(connectionId)
{
    private readonly TaskCompletionSource<T> _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<T> Task => _tcs.Task;

    public override Type ResultType => typeof(T);

    public override void Complete(CompletionMessage completion)
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

    public override void Fail(Exception exception) => _tcs.TrySetException(exception);
}
