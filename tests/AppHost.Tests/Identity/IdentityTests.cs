using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using AppHost.Tests.Chaos;
using AppHost.Tests.Infrastructure;
using Aspire.Hosting.Testing;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using StackExchange.Redis;

namespace AppHost.Tests.Identity;

/// <summary>
/// Identity across nodes (issue 16) on the real app: the hub refuses anonymous users, takes the user from the sign-in's
/// cookie, never hands one user's messages to another, every node accepts a cookie any node issued (the Data
/// Protection keys are shared in Redis), and a client whose node is killed comes back through the balancer, on another
/// node, as the same user.
/// </summary>
[Collection(SignedInApp.Name)]
public sealed class IdentityTests(ChatAppFixture app)
{
    private static readonly TimeSpan DeliveryTimeout = TimeSpan.FromSeconds(15);

    /// <summary>The Redis list of the shared Data Protection key ring (ChatNode's ChatKeys).</summary>
    private const string DataProtectionKeysKey = "{signalr:chat}:dataprotection-keys";

    [Fact]
    public async Task Anonymous_negotiate_and_connect_are_refused_with_401_through_the_balancer_and_on_every_node()
    {
        IEnumerable<Uri> targets = [app.BalancerUrl, .. app.NodeNames.Select(n => app.App.GetEndpoint(n, "http"))];
        foreach (var target in targets)
        {
            using var client = ChatClients.CreateHttpClient(target, cookies: null);

            using var negotiate = await client.PostAsync(new Uri(ChatClients.HubPath + "/negotiate?negotiateVersion=1", UriKind.Relative), content: null);
            Assert.Equal(HttpStatusCode.Unauthorized, negotiate.StatusCode);

            // The connect request itself (what a client that skips negotiation sends first) is refused too.
            using var connect = await client.GetAsync(new Uri(ChatClients.HubPath + "?id=anything", UriKind.Relative));
            Assert.Equal(HttpStatusCode.Unauthorized, connect.StatusCode);

            using var me = await client.GetAsync(new Uri("/auth/me", UriKind.Relative));
            Assert.Equal(HttpStatusCode.Unauthorized, me.StatusCode);
        }

        // A real SignalR client without a sign-in fails to start, on the negotiate's 401.
        var failure = await Assert.ThrowsAsync<HttpRequestException>(() => ChatClients.ConnectSignedInAsync(app.BalancerUrl, new CookieContainer()));
        Assert.Equal(HttpStatusCode.Unauthorized, failure.StatusCode);

        // And one that skips the negotiate is refused at the WebSocket's handshake.
        await using var skipping = new HubConnectionBuilder()
            .WithUrl(new Uri(app.BalancerUrl, ChatClients.HubPath), HttpTransportType.WebSockets, o => o.SkipNegotiation = true)
            .Build();
        var refused = await Assert.ThrowsAnyAsync<Exception>(() => skipping.StartAsync());
        Assert.Contains("401", refused.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_user_comes_from_the_sign_in_never_from_the_query_string()
    {
        var cookies = new CookieContainer();
        Assert.Equal("ivy", await ChatClients.SignInAsync(app.BalancerUrl, cookies, "  ivy "));
        // The old way of naming oneself: ignored.
        await using var connection = await ChatClients.ConnectSignedInAsync(app.BalancerUrl, cookies, query: "?user=alice");
        var received = new TaskCompletionSource<ChatMessageDto>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var subscription = connection.On<ChatMessageDto>("message", m => received.TrySetResult(m));

        Assert.Equal("ivy", await connection.InvokeAsync<string>("GetUser"));
        await connection.InvokeAsync("Send", "who am I");
        var message = await Eventually.WithinAsync(received.Task, DeliveryTimeout, "ivy's own broadcast");
        Assert.Equal("ivy", message.From);

        using var client = ChatClients.CreateHttpClient(app.BalancerUrl, cookies);
        Assert.Equal("ivy", (await client.GetFromJsonAsync<Me>(new Uri("/auth/me", UriKind.Relative)))?.Name);
    }

    [Fact]
    public async Task A_sign_in_with_an_empty_or_overlong_name_is_refused()
    {
        foreach (var name in new[] { "", "   ", new string('x', 41), "a\u0001b" })
        {
            using var client = ChatClients.CreateHttpClient(app.BalancerUrl, new CookieContainer());
            using var response = await client.PostAsJsonAsync(new Uri("/auth/signin", UriKind.Relative), new Me(name));
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var setCookies = response.Headers.TryGetValues("Set-Cookie", out var values) ? values : [];
            Assert.DoesNotContain(setCookies, c => c.StartsWith(ChatClients.AuthCookieName + "=", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task A_connection_never_gets_another_users_direct_messages()
    {
        var nodes = app.NodeNames;
        await using var alice = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, nodes[0], "alice");
        await using var bob = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, nodes[1], "bob");
        // mallory asks to be alice in the query string, on alice's node; the hub ignores it.
        var malloryCookies = await ChatClients.PinToNodeAsync(app.BalancerUrl, nodes[0]);
        await ChatClients.SignInAsync(app.BalancerUrl, malloryCookies, "mallory");
        await using var mallory = await ChatClients.ConnectSignedInAsync(app.BalancerUrl, malloryCookies, query: "?user=alice");
        await using var carol = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, nodes[^1], "carol");

        var inboxes = new[] { ("alice", alice), ("bob", bob), ("mallory", mallory) }
            .ToDictionary(p => p.Item1, p => new Inbox(p.Item2));
        try
        {
            await carol.InvokeAsync("SendToUser", "alice", "for alice");
            await carol.InvokeAsync("SendToUser", "bob", "for bob");
            await carol.InvokeAsync("SendToUser", "ALICE", "for ALICE, who does not exist");
            // Last, one marker to each: a user's messages from one sender arrive in order, so once the marker is in,
            // anything sent before it to that connection would be too.
            foreach (var user in inboxes.Keys)
            {
                await carol.InvokeAsync("SendToUser", user, "marker for " + user);
            }

            foreach (var (user, inbox) in inboxes)
            {
                await Eventually.WithinAsync(inbox.WaitForAsync("marker for " + user), DeliveryTimeout, user + "'s marker");
            }

            Assert.Equal(["for alice", "marker for alice"], inboxes["alice"].Texts);
            Assert.Equal(["for bob", "marker for bob"], inboxes["bob"].Texts);
            Assert.Equal(["marker for mallory"], inboxes["mallory"].Texts);
            Assert.All(inboxes.Values.SelectMany(i => i.Messages), m => Assert.Equal("carol", m.From));
        }
        finally
        {
            foreach (var inbox in inboxes.Values)
            {
                inbox.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_cookie_issued_by_one_node_works_on_every_other_node()
    {
        var issuer = app.App.GetEndpoint(app.NodeNames[0], "http");
        var cookies = new CookieContainer();
        await ChatClients.SignInAsync(issuer, cookies, "nadia");
        var authCookie = cookies.GetCookies(issuer)[ChatClients.AuthCookieName]!;

        foreach (var node in app.NodeNames)
        {
            var url = app.App.GetEndpoint(node, "http");
            using var client = new HttpClient(new SocketsHttpHandler { UseCookies = false }) { BaseAddress = url };

            using var me = new HttpRequestMessage(HttpMethod.Get, "/auth/me");
            me.Headers.Add("Cookie", authCookie.Name + "=" + authCookie.Value);
            using var meResponse = await client.SendAsync(me);
            Assert.True(meResponse.IsSuccessStatusCode, $"{node} refused the cookie issued by {app.NodeNames[0]}: {(int)meResponse.StatusCode}");
            Assert.Equal(node, meResponse.Headers.GetValues(ChatClients.NodeHeader).Single());
            Assert.Equal("nadia", (await meResponse.Content.ReadFromJsonAsync<Me>())?.Name);

            // And the hub on that node, called directly, takes the same user from it.
            var nodeCookies = new CookieContainer();
            nodeCookies.Add(url, new Cookie(authCookie.Name, authCookie.Value, "/"));
            await using var connection = await ChatClients.ConnectSignedInAsync(url, nodeCookies);
            Assert.Equal(node, await connection.InvokeAsync<string>("GetNode"));
            Assert.Equal("nadia", await connection.InvokeAsync<string>("GetUser"));
        }

        // What made it work: the key ring is in Redis, under the app's keys.
        var connectionString = await app.App.GetConnectionStringAsync(AppFaults.Redis)
            ?? throw new InvalidOperationException("redis has no connection string.");
        await using var redis = await ConnectionMultiplexer.ConnectAsync(connectionString);
        var keyRing = await redis.GetDatabase().ListRangeAsync(DataProtectionKeysKey);
        Assert.NotEmpty(keyRing);
        Assert.All(keyRing, k => Assert.StartsWith("<key ", k.ToString(), StringComparison.Ordinal));
    }

    [Fact]
    public async Task After_its_node_is_killed_a_client_comes_back_through_the_balancer_on_another_node_as_the_same_user()
    {
        var victim = app.NodeNames[^1];
        var survivors = app.NodeNames.Where(n => n != victim).ToList();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var ct = timeout.Token;

        // zoe is pinned to the victim, signed in, and connected with automatic reconnects and a 5 s HTTP timeout (as the
        // page is).
        var zoeCookies = await ChatClients.PinToNodeAsync(app.BalancerUrl, victim, cancellationToken: ct);
        await ChatClients.SignInAsync(app.BalancerUrl, zoeCookies, "zoe", ct);
        await using var zoe = new HubConnectionBuilder()
            .WithUrl(new Uri(app.BalancerUrl, ChatClients.HubPath), HttpTransportType.WebSockets, o =>
            {
                o.Cookies = zoeCookies;
                o.HttpMessageHandlerFactory = inner => new ResponseTimeoutHandler(inner, TimeSpan.FromSeconds(5));
            })
            .WithAutomaticReconnect([TimeSpan.Zero, .. Enumerable.Repeat(TimeSpan.FromSeconds(1), 60)])
            .Build();
        var reconnected = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        var clock = new Stopwatch();
        var events = new ConcurrentQueue<string>();
        zoe.Reconnecting += error => { events.Enqueue($"{clock.Elapsed.TotalSeconds:0.0} s: reconnecting ({error?.Message})"); return Task.CompletedTask; };
        zoe.Reconnected += id => { events.Enqueue($"{clock.Elapsed.TotalSeconds:0.0} s: reconnected"); reconnected.TrySetResult(id); return Task.CompletedTask; };
        zoe.Closed += error => { events.Enqueue($"{clock.Elapsed.TotalSeconds:0.0} s: closed ({error?.Message})"); return Task.CompletedTask; };
        await zoe.StartAsync(ct);
        Assert.Equal(victim, await zoe.InvokeAsync<string>("GetNode", ct));
        using var zoeInbox = new Inbox(zoe);
        await using var yann = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, survivors[0], "yann", ct);

        try
        {
            clock.Start();
            await AppFaults.KillAsync(app.App, victim, ct);

            // The balancer stops sending anyone to the dead node within seconds: zoe's pinned requests...
            await Eventually.TrueAsync(async () => survivors.Contains(await WhoAmIQuicklyAsync(zoeCookies)), TimeSpan.FromSeconds(20),
                "zoe's requests (pinned to " + victim + ") to reach a live node");
            var pinnedMovedAfter = clock.Elapsed;
            // ...and new clients: a round of fresh requests, every one answered by a live node.
            await Eventually.TrueAsync(async () =>
            {
                for (var i = 0; i < 2 * app.NodeCount; i++)
                {
                    if (!survivors.Contains(await WhoAmIQuicklyAsync(new CookieContainer())))
                    {
                        return false;
                    }
                }

                return true;
            }, TimeSpan.FromSeconds(20), "every new client to reach a live node");
            var newClientsAfter = clock.Elapsed;

            // zoe's hub connection came back on its own, on a live node, and is still zoe.
            await Eventually.WithinAsync(reconnected.Task, TimeSpan.FromSeconds(30), "zoe's connection to reconnect; its events: " + string.Join("; ", events));
            var reconnectedAfter = clock.Elapsed;
            Assert.Contains(await zoe.InvokeAsync<string>("GetNode", ct), survivors);
            Assert.Equal("zoe", await zoe.InvokeAsync<string>("GetUser", ct));

            // Messages addressed to zoe reach her new connection.
            await yann.InvokeAsync("SendToUser", "zoe", "after the failover", ct);
            var message = await Eventually.WithinAsync(zoeInbox.WaitForAsync("after the failover"), DeliveryTimeout, "yann's message to zoe");
            Assert.Equal("yann", message.From);

            Assert.True(pinnedMovedAfter < TimeSpan.FromSeconds(15), $"pinned requests reached a live node {pinnedMovedAfter.TotalSeconds:0.0} s after the kill");
            Assert.True(newClientsAfter < TimeSpan.FromSeconds(15), $"new clients all reached live nodes {newClientsAfter.TotalSeconds:0.0} s after the kill");
            Assert.True(reconnectedAfter < TimeSpan.FromSeconds(20), $"the hub connection reconnected {reconnectedAfter.TotalSeconds:0.0} s after the kill");
            Console.WriteLine($"Failover of {victim}: pinned requests moved after {pinnedMovedAfter.TotalSeconds:0.0} s, new clients after {newClientsAfter.TotalSeconds:0.0} s, the hub connection reconnected after {reconnectedAfter.TotalSeconds:0.0} s ({string.Join("; ", events)}).");
        }
        finally
        {
            await RestartAsync(victim);
        }
    }

    private async Task RestartAsync(string node)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await AppFaults.StartAsync(app.App, node, timeout.Token);
        // Back in the balancer's rotation (its health check saw it) before the next test pins to it.
        await ChatClients.PinToNodeAsync(app.BalancerUrl, node, maxAttempts: 200, cancellationToken: timeout.Token);
    }

    /// <summary>
    /// /whoami through the balancer with a short timeout, or "(no answer)": a request the balancer sends to a node that
    /// just died hangs (the orchestrator's proxy in front of the node still accepts it) or fails.
    /// </summary>
    private async Task<string> WhoAmIQuicklyAsync(CookieContainer cookies)
    {
        using var client = ChatClients.CreateHttpClient(app.BalancerUrl, cookies);
        client.Timeout = TimeSpan.FromSeconds(3);
        try
        {
            return await ChatClients.WhoAmIAsync(client);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return "(no answer)";
        }
    }

    private sealed record Me(string Name);

    /// <summary>Every <c>message</c> a connection receives, in order.</summary>
    private sealed class Inbox : IDisposable
    {
        private readonly ConcurrentQueue<ChatMessageDto> _messages = new();
        private readonly ConcurrentDictionary<string, TaskCompletionSource<ChatMessageDto>> _waiting = new();
        private readonly IDisposable _subscription;

        public Inbox(HubConnection connection) =>
            _subscription = connection.On<ChatMessageDto>("message", m =>
            {
                _messages.Enqueue(m);
                Slot(m.Text).TrySetResult(m);
            });

        public IReadOnlyList<ChatMessageDto> Messages => [.. _messages];

        public IReadOnlyList<string> Texts => [.. _messages.Select(m => m.Text)];

        public Task<ChatMessageDto> WaitForAsync(string text) => Slot(text).Task;

        public void Dispose() => _subscription.Dispose();

        private TaskCompletionSource<ChatMessageDto> Slot(string text) =>
            _waiting.GetOrAdd(text, _ => new TaskCompletionSource<ChatMessageDto>(TaskCreationOptions.RunContinuationsAsynchronously));
    }
}
