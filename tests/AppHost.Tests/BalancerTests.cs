using System.Net;
using AppHost.Tests.Infrastructure;
using Microsoft.AspNetCore.SignalR.Client;

namespace AppHost.Tests;

/// <summary>The app as a user meets it: everything goes through the balancer.</summary>
[Collection(AppHost.Tests.Identity.SignedInApp.Name)]
public sealed class BalancerTests(ChatAppFixture app)
{
    private static readonly TimeSpan DeliveryTimeout = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Requests_without_a_cookie_reach_every_node()
    {
        using var client = ChatClients.CreateHttpClient(app.BalancerUrl, cookies: null);

        var seen = new HashSet<string>();
        for (var i = 0; i < app.NodeCount * 3; i++)
        {
            seen.Add(await ChatClients.WhoAmIAsync(client));
        }

        Assert.Equal(app.NodeNames.Order(), seen.Order());
    }

    [Fact]
    public async Task Requests_with_the_affinity_cookie_stay_on_one_node()
    {
        var cookies = new CookieContainer();
        using var client = ChatClients.CreateHttpClient(app.BalancerUrl, cookies);

        var first = await ChatClients.WhoAmIAsync(client);
        Assert.NotNull(cookies.GetCookies(app.BalancerUrl)[ChatClients.AffinityCookieName]);

        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(first, await ChatClients.WhoAmIAsync(client));
        }
    }

    [Fact]
    public async Task A_hub_connection_through_the_balancer_connects_over_WebSockets()
    {
        var cookies = new CookieContainer();
        await using var connection = await ChatClients.ConnectAsync(app.BalancerUrl, cookies, "alice");

        var node = await connection.InvokeAsync<string>("GetNode");

        Assert.Contains(node, app.NodeNames);
        // The negotiate response set the affinity cookie, and the socket followed it: plain requests agree.
        using var client = ChatClients.CreateHttpClient(app.BalancerUrl, cookies);
        Assert.Equal(node, await ChatClients.WhoAmIAsync(client));
    }

    [Fact]
    public async Task A_message_sent_on_one_node_reaches_a_client_on_another_node()
    {
        await using var receiver = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[0], "alice");
        await using var sender = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[1], "bob");
        var received = new TaskCompletionSource<ChatMessageDto>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var subscription = receiver.On<ChatMessageDto>("message", message => received.TrySetResult(message));

        await sender.InvokeAsync("Send", "hello across nodes");

        var message = await Eventually.WithinAsync(received.Task, DeliveryTimeout, "alice on " + app.NodeNames[0] + " to receive bob's message");
        Assert.Equal(new ChatMessageDto("bob", "hello across nodes", null, app.NodeNames[1]), message);
    }

    [Fact]
    public async Task A_client_result_is_asked_across_nodes()
    {
        await using var asker = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[0], "carol");
        await using var answerer = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[^1], "dave");
        using var handler = answerer.On("status", () => Task.FromResult("dave is fine"));

        var status = await Eventually.WithinAsync(
            asker.InvokeAsync<string>("AskStatus", answerer.ConnectionId),
            DeliveryTimeout,
            "dave's status, asked from " + app.NodeNames[0]);

        Assert.Equal("dave is fine", status);
    }
}
