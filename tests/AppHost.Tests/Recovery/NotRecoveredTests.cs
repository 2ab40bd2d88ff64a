using System.Globalization;
using AppHost.Tests.Chaos;
using AppHost.Tests.Infrastructure;
using Aspire.Hosting.Testing;
using Microsoft.AspNetCore.SignalR.Client;
using SignalR.RedisStreams.Client;
using StackExchange.Redis;

namespace AppHost.Tests.Recovery;

/// <summary>
/// The plain "not recovered" of connection-state recovery through the real app (MaxLength 100, sessions recoverable for
/// 10 s): a session that expired, and a position trimmed from the stream. The client is told why, starts a fresh
/// session, and live messages reach it.
/// </summary>
[Collection(ShortStreamApp.Name)]
public sealed class NotRecoveredTests(ShortStreamAppFixture app)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_client_back_after_its_session_expired_is_told_it_was_not_recovered_and_starts_fresh()
    {
        await using var client = await RecoveringChatClient.StartAsync(app.BalancerUrl, "eve");
        var token = client.Session.SessionId!;

        await client.DropAsync();
        // Its node refreshes the session no more: it expires MaxDisconnection (plus at most one refresh period) later.
        await Eventually.TrueAsync(async () => !await SessionExistsAsync(token), Wait, "eve's session to expire");
        var outcome = await client.StartAgainAsync();

        Assert.Equal(RecoveryStatus.NotRecovered, outcome.Status);
        Assert.Equal("session unknown or expired", outcome.Reason);
        Assert.NotEqual(token, client.Session.SessionId);
        await client.AssertLiveAsync();
    }

    [Fact]
    public async Task A_client_whose_position_was_trimmed_away_is_told_it_was_not_recovered_rather_than_given_a_hole()
    {
        await using var client = await RecoveringChatClient.StartAsync(app.BalancerUrl, "tom");
        await using var sender = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[0], "tim");
        await sender.InvokeAsync("Send", "before");
        await Eventually.TrueAsync(() => Task.FromResult(client.Texts.Contains("before")), Wait, "tom gets 'before'");

        // Three more senders: each connection's hub calls run one after the other, and a busy machine must still send
        // the lot well within the session's 10 s.
        var senders = new List<HubConnection> { sender };
        try
        {
            for (var s = 1; s < 4; s++)
            {
                senders.Add(await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[s % app.NodeNames.Count], "tim"));
            }

            await client.DropAsync();
            // Six times MaxLength while tom is away: his position is trimmed from the stream.
            var perSender = 6 * ShortStreamAppFixture.MaxLength / senders.Count;
            await Task.WhenAll(senders.Select(async (connection, s) =>
            {
                for (var i = 0; i < perSender; i++)
                {
                    await connection.InvokeAsync("Send", "while away " + (s * perSender + i).ToString(CultureInfo.InvariantCulture));
                }
            }));
            var outcome = await client.StartAgainAsync();

            Assert.Equal(RecoveryStatus.NotRecovered, outcome.Status);
            Assert.Equal("messages after the position were trimmed from the stream", outcome.Reason);
            Assert.DoesNotContain(client.Texts, t => t.StartsWith("while away", StringComparison.Ordinal));
        }
        finally
        {
            foreach (var extra in senders.Skip(1))
            {
                await extra.DisposeAsync();
            }
        }

        await client.AssertLiveAsync();
    }

    private async Task<bool> SessionExistsAsync(string token)
    {
        var connectionString = await app.App.GetConnectionStringAsync(AppFaults.Redis)
            ?? throw new InvalidOperationException("redis has no connection string.");
        await using var redis = await ConnectionMultiplexer.ConnectAsync(connectionString);
        return await redis.GetDatabase().KeyExistsAsync("{signalr}:session:" + token);
    }

    /// <summary>A signed-in chat client with a recovery session, through the balancer; it can drop its connection and
    /// start a new one with the same session.</summary>
    private sealed class RecoveringChatClient : IAsyncDisposable
    {
        private readonly Uri _balancer;
        private readonly System.Net.CookieContainer _cookies;
        private readonly List<string> _texts = [];
        private HubConnection? _connection;

        private RecoveringChatClient(Uri balancer, System.Net.CookieContainer cookies)
        {
            _balancer = balancer;
            _cookies = cookies;
        }

        public RecoverySession Session { get; } = new();

        public IReadOnlyList<string> Texts
        {
            get
            {
                lock (_texts)
                {
                    return [.. _texts];
                }
            }
        }

        public static async Task<RecoveringChatClient> StartAsync(Uri balancer, string user)
        {
            var cookies = new System.Net.CookieContainer();
            await ChatClients.SignInAsync(balancer, cookies, user);
            var client = new RecoveringChatClient(balancer, cookies);
            var first = await client.StartAgainAsync();
            Assert.Equal(RecoveryStatus.New, first.Status);
            return client;
        }

        public async Task<RecoveryOutcome> StartAgainAsync()
        {
            var before = Session.LastOutcome;
            _connection = ChatClients.BuildRecovering(_balancer, _cookies, Session, m =>
            {
                lock (_texts)
                {
                    _texts.Add(m.Text);
                }
            });
            await _connection.StartAsync();
            await Eventually.TrueAsync(() => Task.FromResult(!ReferenceEquals(Session.LastOutcome, before)), Wait, "the server's word on the session");
            return Session.LastOutcome!;
        }

        public async Task DropAsync()
        {
            await _connection!.DisposeAsync();
            _connection = null;
        }

        /// <summary>A message to everyone, sent by the client itself, comes back to it.</summary>
        public async Task AssertLiveAsync()
        {
            var text = "live " + Guid.NewGuid().ToString("N");
            await _connection!.InvokeAsync("Send", text);
            await Eventually.TrueAsync(() => Task.FromResult(Texts.Contains(text)), Wait, "a live message after starting fresh");
        }

        public async ValueTask DisposeAsync()
        {
            if (_connection is not null)
            {
                await _connection.DisposeAsync();
            }
        }
    }
}
