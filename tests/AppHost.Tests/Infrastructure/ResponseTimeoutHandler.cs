namespace AppHost.Tests.Infrastructure;

/// <summary>
/// Gives up on a request whose response headers have not come within <paramref name="timeout"/>, as the chat page does
/// (its SignalR client's <c>timeout</c>). A hub client's negotiate sent, through its affinity cookie, to a node that just
/// died can hang (the orchestrator's proxy in front of the node still accepts it); the timeout turns that into a failed
/// attempt, and the next attempt finds the balancer routing elsewhere. Only the wait for the headers is bounded.
/// </summary>
public sealed class ResponseTimeoutHandler(HttpMessageHandler inner, TimeSpan timeout) : DelegatingHandler(inner)
{
    /// <inheritdoc />
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        using var headers = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        headers.CancelAfter(timeout);
        try
        {
            return await base.SendAsync(request, headers.Token);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new HttpRequestException($"No response to {request.Method} {request.RequestUri} within {timeout.TotalSeconds:0.#} s.", ex);
        }
    }
}
