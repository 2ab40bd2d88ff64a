using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;

namespace TrafficGenerator;

/// <summary>
/// One simulated chat user, signed in under its name: a SignalR connection through the balancer (WebSockets, with the balancer's affinity cookie on
/// the negotiate and the socket, as a browser does), pinned to a node that the other users are not on when it can be,
/// member of the traffic room. Each connection is one session of the <see cref="DeliveryLedger"/>.
/// </summary>
internal sealed class SimulatedUser(string name, TrafficOptions options, DeliveryLedger ledger) : IAsyncDisposable
{
    /// <summary>How many fresh cookie jars to try for a node no other user is on, before taking any node.</summary>
    private const int PinAttempts = 20;

    private static readonly TimeSpan WhoAmITimeout = TimeSpan.FromSeconds(2);

    private HubConnection? _connection;
    private int _sessions;

    public string Name { get; } = name;

    /// <summary>The node of the current connection, null while disconnected.</summary>
    public string? Node { get; private set; }

    public bool IsConnected => Node is not null && _connection?.State == HubConnectionState.Connected;

    /// <summary>The current connection, or null.</summary>
    public HubConnection? Connection => _connection;

    /// <summary>
    /// Connects through the balancer, preferring a node not in <paramref name="avoid"/>, joins the room, and returns a
    /// task that completes when this connection closes (with the reason). Throws when it cannot connect.
    /// </summary>
    public async Task<Task<string>> ConnectAsync(IReadOnlyCollection<string> avoid, CancellationToken cancellationToken)
    {
        var (cookies, node) = await PinAsync(avoid, cancellationToken);
        var session = $"{Name}@{node}#{++_sessions}";
        var closed = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var connection = new HubConnectionBuilder()
            .WithUrl(new Uri(options.BalancerUrl!, "/hubs/chat"), HttpTransportType.WebSockets, o => o.Cookies = cookies)
            .Build();
        connection.On<TrafficMessage>("message", message =>
        {
            if (message.Room == options.Room && TrafficMessage.TryParseSequence(message.Text, out var sequence))
            {
                ledger.Received(session, sequence);
            }
        });
        connection.Closed += error =>
        {
            ledger.SessionEnded(session, DateTimeOffset.UtcNow);
            Node = null;
            closed.TrySetResult(error?.Message ?? "closed");
            return Task.CompletedTask;
        };

        ledger.SessionOpened(session);
        try
        {
            await connection.StartAsync(cancellationToken);
            var actual = await connection.InvokeAsync<string>("GetNode", cancellationToken);
            await connection.InvokeAsync("JoinRoom", options.Room, cancellationToken);
            ledger.SessionJoined(session, DateTimeOffset.UtcNow);
            Node = actual;
        }
        catch
        {
            ledger.SessionEnded(session, DateTimeOffset.UtcNow);
            await connection.DisposeAsync();
            throw;
        }

        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }

        _connection = connection;
        return closed.Task;
    }

    /// <summary>
    /// A cookie jar whose affinity cookie pins to a node outside <paramref name="avoid"/>, and that node. Asks
    /// <c>/whoami</c> with fresh jars, so the balancer's round robin offers each node in turn; an answer from a node in
    /// <paramref name="avoid"/> is taken after <see cref="PinAttempts"/> tries, and a failed or timed-out request (the
    /// balancer may still pick a node that just died) is another try.
    /// </summary>
    private async Task<(CookieContainer Cookies, string Node)> PinAsync(IReadOnlyCollection<string> avoid, CancellationToken cancellationToken)
    {
        Exception? lastError = null;
        for (var attempt = 1; attempt <= 2 * PinAttempts; attempt++)
        {
            var cookies = new CookieContainer();
            using var http = new HttpClient(new SocketsHttpHandler { CookieContainer = cookies, UseCookies = true })
            {
                BaseAddress = options.BalancerUrl,
                // Short: a request the balancer sends to a node that just died hangs (the orchestrator's proxy still
                // accepts it) instead of failing.
                Timeout = WhoAmITimeout,
            };
            WhoAmI? whoAmI;
            try
            {
                whoAmI = await http.GetFromJsonAsync<WhoAmI>(new Uri("/whoami", UriKind.Relative), cancellationToken);
            }
            catch (Exception ex) when (ex is HttpRequestException || (ex is TaskCanceledException && !cancellationToken.IsCancellationRequested))
            {
                lastError = ex;
                continue;
            }

            if (whoAmI is not null && (!avoid.Contains(whoAmI.Node) || attempt >= PinAttempts))
            {
                try
                {
                    // The hub wants a signed-in user: the sign-in's auth cookie joins the affinity cookie in the jar.
                    using var signIn = await http.PostAsJsonAsync(new Uri("/auth/signin", UriKind.Relative), new SignIn(Name), cancellationToken);
                    signIn.EnsureSuccessStatusCode();
                }
                catch (Exception ex) when (ex is HttpRequestException || (ex is TaskCanceledException && !cancellationToken.IsCancellationRequested))
                {
                    lastError = ex;
                    continue;
                }

                return (cookies, whoAmI.Node);
            }
        }

        throw new HttpRequestException($"/whoami through the balancer failed {2 * PinAttempts} times.", lastError);
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
    }

    private sealed record WhoAmI(string Node);

    private sealed record SignIn(string Name);
}

/// <summary>The chat's <c>message</c> event as the generator reads it; its messages' texts are <c>traffic #N</c>.</summary>
internal sealed record TrafficMessage(string From, string Text, string? Room, string Node)
{
    private const string Prefix = "traffic #";

    public static string TextOf(long sequence) => Prefix + sequence.ToString(CultureInfo.InvariantCulture);

    public static bool TryParseSequence(string text, out long sequence)
    {
        sequence = 0;
        return text.StartsWith(Prefix, StringComparison.Ordinal)
            && long.TryParse(text.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out sequence);
    }
}
