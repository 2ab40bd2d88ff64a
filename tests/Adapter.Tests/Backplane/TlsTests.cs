using System.Globalization;
using Microsoft.AspNetCore.SignalR;
using SignalR.RedisStreams.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>The backplane over TLS: a redis-server with <c>--tls-port</c> on a certificate made for the test, the nodes
/// given only the TLS port and the test's certificate authority (<c>ConfigurationOptions.TrustIssuer</c>).</summary>
public sealed class TlsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Messages_cross_nodes_through_a_redis_reached_over_tls_only()
    {
        await using var redis = await RedisServer.StartWithTlsAsync();
        var ca = redis.CaCertificatePath!;
        await using var cluster = await TestCluster.StartAsync(redis, 2, HubProtocolKind.Json, output, o =>
        {
            var configuration = ConfigurationOptions.Parse(redis.TlsConnectionString);
            configuration.TrustIssuer(ca);
            o.Configuration = configuration;
        }, redis.TlsConnectionString);
        await using var a = await cluster.ConnectAsync(0);
        await using var b = await cluster.ConnectAsync(1);
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "over tls");
        await cluster.Hub(1).Clients.Client(a.ConnectionId).SendAsync(TestClient.SendMethod, "direct over tls");
        await b.WaitForTextAsync("over tls");
        await a.WaitForTextAsync("direct over tls");

        // Every connection of the backplane came in on the TLS port (CLIENT LIST's laddr), none on the plain one.
        var clients = (string)(await redis.ExecuteAsync("CLIENT", "LIST"))!;
        var backplane = clients.Split('\n').Where(l => l.Contains(" name=signalr-streams", StringComparison.Ordinal)).ToArray();
        output.WriteLine(string.Join(Environment.NewLine, backplane));
        // Each node: a command and a reader multiplexer, each with its interactive and subscription connections.
        Assert.True(backplane.Length >= 4, $"{backplane.Length} backplane connections:\n{clients}");
        Assert.All(backplane, l => Assert.Contains($"laddr=127.0.0.1:{redis.TlsPort.ToString(CultureInfo.InvariantCulture)} ", l, StringComparison.Ordinal));
    }
}
