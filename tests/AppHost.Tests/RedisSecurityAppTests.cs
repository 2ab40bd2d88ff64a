using System.Net.Sockets;
using System.Text;
using AppHost.Redis;
using AppHost.Tests.Infrastructure;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace AppHost.Tests;

/// <summary>The app with <c>Redis:Tls=true</c> (two nodes): redis-server listens with TLS only, on a certificate the
/// AppHost made for the run, and the chat nodes connect as their ACL user (<see cref="ChatRedisAcl"/>).</summary>
public sealed class TlsAppFixture : ChatAppFixture
{
    public override int NodeCount => 2;

    protected override IEnumerable<string> AppHostArgs() => [.. base.AppHostArgs(), "Redis:Tls=true"];
}

/// <summary>Least privilege and TLS on the real app: messages cross nodes through a Redis that speaks TLS only; every
/// connection of the nodes is the ACL user <c>chatnode</c>, never the default user; Redis refused the nodes nothing
/// (<c>ACL LOG</c> is empty); and a plain-text client gets no answer from the TLS port.</summary>
public sealed class RedisSecurityAppTests(TlsAppFixture app, ITestOutputHelper output) : IClassFixture<TlsAppFixture>
{
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(1);

    [Fact]
    public async Task Nodes_talk_to_redis_over_tls_as_their_least_privilege_user_and_redis_refuses_them_nothing()
    {
        using var timeout = new CancellationTokenSource(Deadline);
        var ct = timeout.Token;
        await using var alice = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[0], "alice", ct);
        await using var bob = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[1], "bob", ct);
        var received = new TaskCompletionSource<ChatMessageDto>(TaskCreationOptions.RunContinuationsAsynchronously);
        bob.On<ChatMessageDto>("message", m => received.TrySetResult(m));
        await alice.InvokeAsync("Send", "over tls", ct);
        var message = await received.Task.WaitAsync(ct);
        Assert.Equal("over tls", message.Text);
        Assert.Equal(app.NodeNames[0], message.Node);

        await using var admin = await AdminAsync();
        var server = admin.GetServers()[0];
        var clients = (string)(await server.ExecuteAsync("CLIENT", "LIST"))!;
        var nodeConnections = clients.Split('\n').Where(l => l.Contains(" name=signalr-streams", StringComparison.Ordinal)).ToArray();
        output.WriteLine(string.Join(Environment.NewLine, nodeConnections));
        // Each node: the backplane's command connection and its reader.
        Assert.True(nodeConnections.Length >= 2 * app.NodeCount, $"{nodeConnections.Length} backplane connections:\n{clients}");
        Assert.All(nodeConnections, l => Assert.Contains(" user=" + ChatRedisAcl.UserName + " ", l, StringComparison.Ordinal));
        var refused = (RedisResult[])(await server.ExecuteAsync("ACL", "LOG"))!;
        Assert.True(refused.Length == 0, "Redis refused the chat nodes' user: " + string.Join(" | ", refused.Select(r => string.Join(' ', (RedisResult[])r!))));
    }

    [Fact]
    public async Task A_plain_text_client_gets_no_answer_from_the_tls_port()
    {
        var endpoint = Redis().PrimaryEndpoint;
        using var tcp = new TcpClient();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await tcp.ConnectAsync(endpoint.Host, endpoint.Port, timeout.Token);
        var stream = tcp.GetStream();
        await stream.WriteAsync("*1\r\n$4\r\nPING\r\n"u8.ToArray(), timeout.Token);
        var buffer = new byte[256];
        int read;
        try
        {
            read = await stream.ReadAsync(buffer, timeout.Token);
        }
        catch (IOException)
        {
            read = 0; // reset: as good a refusal as a close
        }

        var reply = Encoding.ASCII.GetString(buffer, 0, read);
        Assert.DoesNotContain("PONG", reply, StringComparison.Ordinal);
        Assert.DoesNotContain("NOAUTH", reply, StringComparison.Ordinal);
    }

    private RedisServerResource Redis() => app.App.Services.GetRequiredService<DistributedApplicationModel>()
        .Resources.OfType<RedisServerResource>().Single();

    private async Task<ConnectionMultiplexer> AdminAsync()
    {
        var redis = Redis();
        var connectionString = await app.App.GetConnectionStringAsync(AppHostSettings.RedisResourceName)
            ?? throw new InvalidOperationException("redis has no connection string.");
        Assert.Contains("ssl=true", connectionString, StringComparison.Ordinal);
        var options = ConfigurationOptions.Parse(connectionString);
        options.TrustIssuer(redis.Tls?.CaCertificate ?? throw new InvalidOperationException("Redis:Tls=true made no certificate."));
        options.AllowAdmin = true;
        return await ConnectionMultiplexer.ConnectAsync(options);
    }
}
