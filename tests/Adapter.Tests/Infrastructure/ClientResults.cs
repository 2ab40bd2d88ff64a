using System.Diagnostics;
using Microsoft.AspNetCore.SignalR;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>Assertions about client results (<c>InvokeAsync</c> through a hub context) that need retries with a deadline.</summary>
public static class ClientResults
{
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(2);

    /// <summary>The exact message SignalR's lifetime managers use when no server has the connection.</summary>
    public static string DoesNotExistMessage(string connectionId) => $"Connection '{connectionId}' does not exist.";

    /// <summary>Invokes "GetNumber" on <paramref name="connectionId"/> from <paramref name="hub"/> until it fails with
    /// <c>IOException("Connection '{id}' does not exist.")</c>, for at most <paramref name="timeout"/>; each attempt is
    /// cancelled after 2 s. Throws with the last outcome if that never happens.</summary>
    public static async Task EventuallyDoesNotExistAsync(IHubContext<TestHub> hub, string connectionId, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(hub);
        var limit = timeout ?? Eventually.DefaultTimeout;
        var clock = Stopwatch.StartNew();
        string lastOutcome;
        while (true)
        {
            using var attempt = new CancellationTokenSource(AttemptTimeout);
            try
            {
                var value = await hub.Clients.Client(connectionId).InvokeAsync<int>(TestClient.GetNumberMethod, "anyone there?", attempt.Token);
                lastOutcome = $"it returned {value}";
            }
            catch (IOException ex) when (ex.Message == DoesNotExistMessage(connectionId))
            {
                return;
            }
            catch (Exception ex) when (ex is IOException or HubException or OperationCanceledException or TimeoutException)
            {
                lastOutcome = $"{ex.GetType().Name}: {ex.Message}";
            }

            if (clock.Elapsed > limit)
            {
                throw new TimeoutException(
                    $"An invoke on connection '{connectionId}' still did not fail with \"{DoesNotExistMessage(connectionId)}\" " +
                    $"after {limit.TotalSeconds:0} s; the last attempt: {lastOutcome}");
            }

            // Polling interval of a deadline-bounded retry.
            await Task.Delay(50);
        }
    }
}
