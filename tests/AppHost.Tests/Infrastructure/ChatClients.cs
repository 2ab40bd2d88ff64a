using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using SignalR.RedisStreams.Client;

namespace AppHost.Tests.Infrastructure;

/// <summary>
/// Clients of the chat app through the balancer, the way a browser talks to it: HTTP with or without the affinity
/// cookie, and hub connections (WebSockets only) whose negotiate and socket carry the same cookie, so both reach the
/// same node.
/// </summary>
public static class ChatClients
{
    /// <summary>Path of the chat hub on every node (and through the balancer).</summary>
    public const string HubPath = "/hubs/chat";

    /// <summary>Response header naming the node that answered.</summary>
    public const string NodeHeader = "X-Chat-Node";

    /// <summary>The balancer's session-affinity cookie.</summary>
    public const string AffinityCookieName = ".ChatNode.Affinity";

    /// <summary>An HttpClient on <paramref name="balancerUrl"/>; with <paramref name="cookies"/> null it sends no cookie at all.</summary>
    public static HttpClient CreateHttpClient(Uri balancerUrl, CookieContainer? cookies)
    {
        var handler = cookies is null
            ? new SocketsHttpHandler { UseCookies = false }
            : new SocketsHttpHandler { UseCookies = true, CookieContainer = cookies };
        return new HttpClient(handler) { BaseAddress = balancerUrl, Timeout = TimeSpan.FromSeconds(30) };
    }

    /// <summary><c>GET /whoami</c>: the node that answered (checked against the <see cref="NodeHeader"/> header).</summary>
    public static async Task<string> WhoAmIAsync(HttpClient client, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        using var response = await client.GetAsync(new Uri("/whoami", UriKind.Relative), cancellationToken);
        response.EnsureSuccessStatusCode();
        var body = await response.Content.ReadFromJsonAsync<WhoAmIResponse>(cancellationToken)
            ?? throw new InvalidOperationException("/whoami returned no body.");
        var header = response.Headers.TryGetValues(NodeHeader, out var values) ? values.Single() : null;
        if (header != body.Node)
        {
            throw new InvalidOperationException($"/whoami says '{body.Node}' but the {NodeHeader} header says '{header}'.");
        }

        return body.Node;
    }

    /// <summary>How long <see cref="PinToNodeAsync"/> keeps asking at least: a node started again after a kill comes
    /// back into the balancer's rotation only after its health checks (passive reactivation: 10 s).</summary>
    public static readonly TimeSpan PinDeadline = TimeSpan.FromSeconds(45);

    /// <summary>
    /// A cookie container whose affinity cookie pins requests to <paramref name="node"/>: asks <c>/whoami</c> with fresh
    /// containers until the balancer's round robin lands on that node (at least <paramref name="maxAttempts"/> times,
    /// and for at least <see cref="PinDeadline"/>).
    /// </summary>
    public static async Task<CookieContainer> PinToNodeAsync(Uri balancerUrl, string node, int maxAttempts = 50, CancellationToken cancellationToken = default)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var attempt = 0; attempt < maxAttempts || clock.Elapsed < PinDeadline; attempt++)
        {
            var cookies = new CookieContainer();
            using var client = CreateHttpClient(balancerUrl, cookies);
            if (await WhoAmIAsync(client, cancellationToken) == node)
            {
                if (cookies.GetCookies(balancerUrl)[AffinityCookieName] is null)
                {
                    throw new InvalidOperationException($"The balancer set no {AffinityCookieName} cookie.");
                }

                return cookies;
            }
        }

        throw new InvalidOperationException($"The balancer never routed to {node} in {clock.Elapsed.TotalSeconds:0} s of fresh requests.");
    }

    /// <summary>The chat's auth cookie, issued by <c>POST /auth/signin</c>.</summary>
    public const string AuthCookieName = ".ChatNode.Auth";

    /// <summary>
    /// Signs in as <paramref name="user"/> through <paramref name="baseUrl"/> (the balancer or one node): the auth
    /// cookie lands in <paramref name="cookies"/>. Returns the name the server signed in.
    /// </summary>
    public static async Task<string> SignInAsync(Uri baseUrl, CookieContainer cookies, string user, CancellationToken cancellationToken = default)
    {
        using var client = CreateHttpClient(baseUrl, cookies);
        using var response = await client.PostAsJsonAsync(new Uri("/auth/signin", UriKind.Relative), new SignInRequest(user), cancellationToken);
        response.EnsureSuccessStatusCode();
        var body = await response.Content.ReadFromJsonAsync<SignInRequest>(cancellationToken)
            ?? throw new InvalidOperationException("/auth/signin returned no body.");
        if (cookies.GetCookies(baseUrl)[AuthCookieName] is null)
        {
            throw new InvalidOperationException($"/auth/signin set no {AuthCookieName} cookie.");
        }

        return body.Name;
    }

    /// <summary>
    /// Signs in as <paramref name="user"/> (into <paramref name="cookies"/>), then a started hub connection through the
    /// balancer, WebSockets only, carrying <paramref name="cookies"/> on the negotiate request and on the socket. The
    /// caller disposes it.
    /// </summary>
    public static async Task<HubConnection> ConnectAsync(Uri balancerUrl, CookieContainer cookies, string user, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(balancerUrl);
        await SignInAsync(balancerUrl, cookies, user, cancellationToken);
        return await ConnectSignedInAsync(balancerUrl, cookies, cancellationToken: cancellationToken);
    }

    /// <summary>
    /// A started hub connection to <paramref name="baseUrl"/> with whatever <paramref name="cookies"/> holds (the
    /// auth cookie of an earlier sign-in, or none), WebSockets only. The caller disposes it.
    /// </summary>
    public static async Task<HubConnection> ConnectSignedInAsync(Uri baseUrl, CookieContainer cookies, string query = "", CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(baseUrl);
        var connection = new HubConnectionBuilder()
            .WithUrl(new Uri(baseUrl, HubPath + query), HttpTransportType.WebSockets, options => options.Cookies = cookies)
            .Build();
        try
        {
            await connection.StartAsync(cancellationToken);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        return connection;
    }

    /// <summary>A started hub connection for <paramref name="user"/> that lives on <paramref name="node"/>.</summary>
    public static async Task<HubConnection> ConnectToNodeAsync(Uri balancerUrl, string node, string user, CancellationToken cancellationToken = default)
    {
        var cookies = await PinToNodeAsync(balancerUrl, node, cancellationToken: cancellationToken);
        var connection = await ConnectAsync(balancerUrl, cookies, user, cancellationToken);
        var actual = await connection.InvokeAsync<string>("GetNode", cancellationToken);
        if (actual != node)
        {
            await connection.DisposeAsync();
            throw new InvalidOperationException($"Pinned to {node}, but the hub connection landed on {actual}.");
        }

        return connection;
    }

    /// <summary>
    /// A hub connection through <paramref name="balancerUrl"/> that uses connection-state recovery: WebSockets, the
    /// <paramref name="cookies"/> of a sign-in, <paramref name="session"/> configured and attached, and
    /// <paramref name="onMessage"/> on the chat's <c>message</c> event (through the session, so positions are kept).
    /// With <paramref name="responseTimeout"/>, an HTTP request unanswered that long fails (see
    /// <see cref="ResponseTimeoutHandler"/>); with <paramref name="reconnect"/>, it reconnects by itself. Not started.
    /// </summary>
    public static HubConnection BuildRecovering(
        Uri balancerUrl, CookieContainer cookies, RecoverySession session, Action<ChatMessageDto> onMessage,
        TimeSpan? responseTimeout = null, IRetryPolicy? reconnect = null)
    {
        ArgumentNullException.ThrowIfNull(session);
        var builder = new HubConnectionBuilder()
            .WithUrl(new Uri(balancerUrl, HubPath), HttpTransportType.WebSockets, o =>
            {
                o.Cookies = cookies;
                if (responseTimeout is { } timeout)
                {
                    o.HttpMessageHandlerFactory = inner => new ResponseTimeoutHandler(inner, timeout);
                }
            });
        if (reconnect is not null)
        {
            builder.WithAutomaticReconnect(reconnect);
        }
        session.Configure(builder);
        var connection = builder.Build();
        session.Attach(connection);
        session.On(connection, "message", onMessage);
        return connection;
    }

    private sealed record WhoAmIResponse(string Node);

    private sealed record SignInRequest(string Name);
}
