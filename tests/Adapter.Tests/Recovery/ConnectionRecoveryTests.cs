using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using SignalR.RedisStreams.Client;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Recovery;

/// <summary>
/// Connection-state recovery across nodes: a client whose server stops reaching it (frozen, then cut off, as when the
/// server dies) reconnects to another node with its session and position, and gets every message it missed exactly
/// once, in order, then live ones; and the plain "not recovered" cases.
/// </summary>
public sealed class ConnectionRecoveryTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private const string Room = "room";
    private const string User = "ann";

    private Task<TestCluster> StartClusterAsync(HubProtocolKind protocol, Action<RedisStreamsOptions>? configure = null)
        => TestCluster.StartAsync(redis.Server, 2, protocol, output, o =>
        {
            o.ConnectionStateRecovery = true;
            configure?.Invoke(o);
        });

    /// <summary>Sends numbered messages ("m1", "m2", ...) from one node, cycling through the ways a message reaches
    /// the client: to all, to its group, to its user and (while it has one) to its old connection id.</summary>
    private sealed class NumberedSender(IHubContext<TestHub> hub)
    {
        public int Sent { get; private set; }

        public Task SendToAllAsync() => hub.Clients.All.SendAsync(TestClient.SendMethod, "m" + ++Sent);

        public async Task SendAsync(string? connectionId)
        {
            var n = ++Sent;
            var text = "m" + n;
            var kinds = connectionId is null ? 3 : 4;
            switch (n % kinds)
            {
                case 0: await hub.Clients.All.SendAsync(TestClient.SendMethod, text); break;
                case 1: await hub.Clients.Group(Room).SendAsync(TestClient.SendMethod, text); break;
                case 2: await hub.Clients.User(User).SendAsync(TestClient.SendMethod, text); break;
                default: await hub.Clients.Client(connectionId!).SendAsync(TestClient.SendMethod, text); break;
            }
        }
    }

    [Theory]
    [InlineData(HubProtocolKind.Json)]
    [InlineData(HubProtocolKind.MessagePack)]
    public async Task A_client_cut_off_from_its_node_recovers_on_another_with_every_missed_message_once_and_in_order(HubProtocolKind protocol)
    {
        await using var cluster = await StartClusterAsync(protocol);
        await using var proxy = CuttableProxy.Start(cluster.Nodes[0].Url);
        await using var client = await RecoveringClient.ConnectAsync(proxy.Rewrite(cluster.Nodes[0].HubUrl), User, protocol);
        Assert.Equal(RecoveryStatus.New, client.Outcomes.Single().Status);
        await client.Connection.InvokeAsync(nameof(TestHub.JoinGroup), Room);
        var oldConnection = client.Connection.ConnectionId!;
        var sender = new NumberedSender(cluster.Hub(1));

        for (var i = 0; i < 20; i++)
        {
            await sender.SendAsync(oldConnection);
        }
        await client.WaitForCountAsync(20);

        // The node goes on writing to a socket that no longer reaches the client, then the connection breaks.
        proxy.Freeze();
        for (var i = 0; i < 40; i++)
        {
            await sender.SendAsync(oldConnection);
        }
        proxy.Cut();
        Assert.Equal(20, client.Numbers.Count);

        // Sends go on while the client reconnects to the other node: the seam between replay and live traffic.
        var reconnected = false;
        var sending = Task.Run(async () =>
        {
            var after = 0;
            while (sender.Sent < 5_000 && (!Volatile.Read(ref reconnected) || after++ < 40))
            {
                await sender.SendAsync(connectionId: null);
            }
        });
        var outcome = await client.ReconnectAsync(cluster.Nodes[1].HubUrl);
        Volatile.Write(ref reconnected, true);
        await Eventually.WithinAsync(sending, "the sends during and after the reconnect");

        Assert.Equal(RecoveryStatus.Recovered, outcome.Status);
        Assert.Equal("", outcome.Reason);
        Assert.InRange(outcome.Replayed, 40, sender.Sent - 20);
        await client.WaitForCountAsync(sender.Sent);
        Assert.Equal(Enumerable.Range(1, sender.Sent), client.Numbers);
        output.WriteLine($"{sender.Sent} sent; {outcome.Replayed} replayed on recovery; none lost or doubled");

        // The recovered connection is in the group and is the user's: live sends of both kinds reach it.
        await sender.SendAsync(connectionId: null);
        await sender.SendAsync(connectionId: null);
        await client.WaitForCountAsync(sender.Sent);
        Assert.Equal(Enumerable.Range(1, sender.Sent), client.Numbers);
    }

    [Fact]
    public async Task A_session_that_expired_is_not_recovered_and_the_client_is_told_why()
    {
        await using var cluster = await StartClusterAsync(HubProtocolKind.Json, o => o.MaxDisconnectionDuration = TimeSpan.FromSeconds(1));
        await using var proxy = CuttableProxy.Start(cluster.Nodes[0].Url);
        await using var client = await RecoveringClient.ConnectAsync(proxy.Rewrite(cluster.Nodes[0].HubUrl), User, HubProtocolKind.Json);
        var key = $"{cluster.StreamKey}:session:{client.Session.SessionId}";
        Assert.Equal(1, (int)await redis.Server.ExecuteAsync("EXISTS", key));

        proxy.Cut();
        await Eventually.TrueAsync(async () => (int)await redis.Server.ExecuteAsync("EXISTS", key) == 0, "the session to expire");
        var outcome = await client.ReconnectAsync(cluster.Nodes[1].HubUrl);

        Assert.Equal(RecoveryStatus.NotRecovered, outcome.Status);
        Assert.Equal("session unknown or expired", outcome.Reason);
        // It starts fresh: a new session, and live messages reach it.
        Assert.NotEqual(key, $"{cluster.StreamKey}:session:{client.Session.SessionId}");
        var sender = new NumberedSender(cluster.Hub(0));
        await sender.SendToAllAsync();
        await client.WaitForCountAsync(1);
        Assert.Equal([1], client.Numbers);
    }

    [Fact]
    public async Task A_position_trimmed_from_the_stream_is_not_recovered_rather_than_replayed_with_a_hole()
    {
        await using var cluster = await StartClusterAsync(HubProtocolKind.Json, o => o.MaxLength = 10);
        await using var proxy = CuttableProxy.Start(cluster.Nodes[0].Url);
        await using var client = await RecoveringClient.ConnectAsync(proxy.Rewrite(cluster.Nodes[0].HubUrl), User, HubProtocolKind.Json);
        var sender = new NumberedSender(cluster.Hub(1));
        await sender.SendToAllAsync();
        await client.WaitForCountAsync(1);
        var position = client.Session.Position!;

        proxy.Freeze();
        // MAXLEN ~ trims whole nodes of the stream: send until the stream's first entry is after the client's position.
        var stream = cluster.StreamKey;
        while (sender.Sent < 5_000 && string.CompareOrdinal(await FirstEntryIdAsync(stream), IdOf(position)) <= 0)
        {
            for (var i = 0; i < 50; i++)
            {
                await sender.SendToAllAsync();
            }
        }
        proxy.Cut();
        var outcome = await client.ReconnectAsync(cluster.Nodes[1].HubUrl);

        Assert.Equal(RecoveryStatus.NotRecovered, outcome.Status);
        Assert.Equal("messages after the position were trimmed from the stream", outcome.Reason);
        Assert.Equal([1], client.Numbers);
    }

    [Fact]
    public async Task A_session_presented_by_another_user_is_not_recovered()
    {
        await using var cluster = await StartClusterAsync(HubProtocolKind.Json);
        await using var client = await RecoveringClient.ConnectAsync(cluster.Nodes[0].HubUrl, User, HubProtocolKind.Json);
        await client.Connection.InvokeAsync(nameof(TestHub.JoinGroup), Room);

        var outcome = await client.ReconnectAsync(cluster.Nodes[1].HubUrl, asUser: "mallory");

        Assert.Equal(RecoveryStatus.NotRecovered, outcome.Status);
        Assert.Equal("session belongs to another user", outcome.Reason);
        // Not in the old session's group either.
        await cluster.Hub(0).Clients.Group(Room).SendAsync(TestClient.SendMethod, "m1");
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "m2");
        await client.WaitForCountAsync(1);
        await cluster.FlushAsync();
        Assert.Equal([2], client.Numbers);
    }

    [Fact]
    public async Task Clients_without_the_helper_are_unaffected_when_recovery_is_on()
    {
        await using var cluster = await StartClusterAsync(HubProtocolKind.MessagePack);
        var plain = await cluster.ConnectAsync(0, user: User);
        await cluster.Hub(1).Clients.All.SendAsync(TestClient.SendMethod, "hello");
        await cluster.Hub(1).Clients.User(User).SendAsync(TestClient.SendMethod, "you");
        await cluster.Hub(1).Clients.Client(plain.ConnectionId).SendAsync(TestClient.SendMethod, "only you");
        await cluster.FlushAsync(plain);
        Assert.Equal(["hello", "you", "only you"], plain.Texts);
    }

    [Fact]
    public async Task With_recovery_off_a_client_cut_off_from_its_node_misses_what_was_sent_meanwhile()
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output);
        await using var proxy = CuttableProxy.Start(cluster.Nodes[0].Url);
        var before = await TestClient.ConnectAsync("before", 0, proxy.Rewrite(cluster.Nodes[0].HubUrl), HubProtocolKind.Json, User);
        await using (before)
        {
            await cluster.Hub(1).Clients.User(User).SendAsync(TestClient.SendMethod, "m1");
            await before.WaitForTextAsync("m1");
            proxy.Freeze();
            await cluster.Hub(1).Clients.User(User).SendAsync(TestClient.SendMethod, "m2");
            proxy.Cut();
        }
        var after = await cluster.ConnectAsync(1, user: User);
        await cluster.Hub(1).Clients.User(User).SendAsync(TestClient.SendMethod, "m3");
        await cluster.FlushAsync(after);

        Assert.Equal(["m1"], before.Texts);
        Assert.Equal(["m3"], after.Texts); // m2 is gone: the old behaviour that recovery exists to fix
    }

    private async Task<string> FirstEntryIdAsync(string stream)
    {
        var info = (StackExchange.Redis.RedisResult[])(await redis.Server.ExecuteAsync("XINFO", "STREAM", stream))!;
        for (var i = 0; i + 1 < info.Length; i += 2)
        {
            if (info[i].ToString() == "recorded-first-entry-id")
            {
                return Pad(info[i + 1].ToString());
            }
        }
        throw new InvalidOperationException("XINFO STREAM has no recorded-first-entry-id.");
    }

    /// <summary>The stream id in a wire position, padded as <see cref="Pad"/> pads.</summary>
    private static string IdOf(string position) => position.Substring(4, 36);

    private static string Pad(string id)
    {
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        return id[..dash].PadLeft(15, '0') + "-" + id[(dash + 1)..].PadLeft(20, '0');
    }
}
