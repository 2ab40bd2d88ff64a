using System.Net;
using AppHost.Tests.Infrastructure;
using Microsoft.AspNetCore.SignalR.Client;
using SignalR.RedisStreams.Client;

namespace AppHost.Tests.Recovery;

/// <summary>With <c>Recovery:Enabled=false</c> the app behaves as before recovery existed, even for a client that uses
/// the recovery helper: no session, and what was sent while the client was away is gone.</summary>
[Collection(TelemetryApp.Name)]
public sealed class RecoveryOffTests(TelemetryAppFixture app)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task With_recovery_off_a_client_back_from_a_drop_has_no_session_and_misses_what_was_sent_meanwhile()
    {
        var cookies = new CookieContainer();
        await ChatClients.SignInAsync(app.BalancerUrl, cookies, "otto");
        await using var sender = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[0], "olga");
        var session = new RecoverySession();
        var texts = new List<string>();

        async Task<HubConnection> ConnectAsync()
        {
            var connection = ChatClients.BuildRecovering(app.BalancerUrl, cookies, session, m => { lock (texts) { texts.Add(m.Text); } });
            await connection.StartAsync();
            return connection;
        }

        bool Has(string text)
        {
            lock (texts)
            {
                return texts.Contains(text);
            }
        }

        var first = await ConnectAsync();
        await sender.InvokeAsync("SendToUser", "otto", "before");
        await Eventually.TrueAsync(() => Task.FromResult(Has("before")), Wait, "otto gets 'before'");
        await first.DisposeAsync();

        await sender.InvokeAsync("SendToUser", "otto", "while away");
        await using var second = await ConnectAsync();
        await sender.InvokeAsync("SendToUser", "otto", "after");
        await Eventually.TrueAsync(() => Task.FromResult(Has("after")), Wait, "otto gets 'after' on his new connection");

        Assert.Null(session.LastOutcome); // the server never spoke of a session
        Assert.False(Has("while away"), "with recovery off, a message sent while the client was away cannot reach it");
    }
}
