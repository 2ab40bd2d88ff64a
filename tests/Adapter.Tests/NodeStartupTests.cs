using System.Diagnostics;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using SignalR.RedisStreams.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests;

/// <summary>A node whose Redis connection is not there yet when the first clients arrive.</summary>
public sealed class NodeStartupTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly List<IConnectionMultiplexer> _multiplexers = [];

    [Fact]
    public async Task A_client_that_connects_before_the_node_reaches_Redis_is_served_once_it_does()
    {
        var id = TestCluster.NewIsolationId();
        var redisReachable = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var starting = TestNode.StartAsync(0, redis.Server.ConnectionString, o =>
        {
            TestCluster.ApplyTestDefaults(o, id);
            // Redis "comes up" only when the test says so.
            o.ConnectionFactory = async log =>
            {
                await redisReachable.Task;
                var multiplexer = await ConnectionMultiplexer.ConnectAsync(redis.Server.ConnectionString, log);
                lock (_multiplexers)
                {
                    _multiplexers.Add(multiplexer);
                }

                return multiplexer;
            };
        }, output);

        try
        {
            await Eventually.TrueAsync(() => starting.IsCompleted, "the node to accept connections before Redis answers", TimeSpan.FromSeconds(3));
        }
        catch (TimeoutException)
        {
            // The host waits for Redis before it accepts connections: then there is no early client to serve.
            output.WriteLine("The node does not start before Redis answers; nothing to race.");
            redisReachable.TrySetResult();
        }

        var node = await Eventually.WithinAsync(starting, "the node to start");
        try
        {
            await using var connection = new HubConnectionBuilder().WithUrl(node.HubUrl, HttpTransportType.WebSockets).Build();
            var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            connection.On<string>(TestClient.SendMethod, text => received.TrySetResult(text));
            var closed = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
            connection.Closed += ex =>
            {
                closed.TrySetResult(ex);
                return Task.CompletedTask;
            };

            // The handshake is answered before the lifetime manager's OnConnectedAsync runs, i.e. while Redis is still away.
            await Eventually.WithinAsync(connection.StartAsync(), "the client to connect");
            var ping = connection.InvokeAsync<string>(nameof(TestHub.Ping));
            redisReachable.TrySetResult();

            var first = await Task.WhenAny(ping, closed.Task).WaitAsync(Eventually.DefaultTimeout);
            if (first == closed.Task)
            {
                var error = await closed.Task;
                Assert.Fail($"The server closed the connection that arrived before Redis was reachable: {error?.Message ?? "(no error)"}");
            }

            var connectionId = await ping;
            Assert.Equal(connection.ConnectionId, connectionId);
            await node.HubContext.Groups.AddToGroupAsync(connectionId, "room");
            await node.HubContext.Clients.Group("room").SendAsync(TestClient.SendMethod, "served");
            Assert.Equal("served", await Eventually.WithinAsync(received.Task, "a group message"));
        }
        finally
        {
            redisReachable.TrySetResult();
            await node.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_node_whose_Redis_is_down_at_start_starts_unhealthy_holds_new_connections_and_serves_them_once_Redis_is_up()
    {
        // A private redis-server, stopped before the node starts: its port refuses connections.
        await using var server = await RedisServer.StartAsync();
        await server.StopAsync();
        var id = TestCluster.NewIsolationId();
        void Configure(RedisStreamsOptions o)
        {
            TestCluster.ApplyTestDefaults(o, id);
        }

        var clock = Stopwatch.StartNew();
        await using var node = await Eventually.WithinAsync(
            TestNode.StartAsync(0, server.ConnectionString + ",connectTimeout=1000", Configure, output), "the node to start without Redis", TimeSpan.FromSeconds(60));
        output.WriteLine($"the node started without Redis in {clock.Elapsed.TotalSeconds:0.0} s");
        var health = await node.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        Assert.Equal(HealthStatus.Unhealthy, health.Status);

        await using var connection = new HubConnectionBuilder().WithUrl(node.HubUrl, HttpTransportType.WebSockets).Build();
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.On<string>(TestClient.SendMethod, text => received.TrySetResult(text));
        await Eventually.WithinAsync(connection.StartAsync(), "the handshake");
        var ping = connection.InvokeAsync<string>(nameof(TestHub.Ping));
        await Eventually.TrueAsync(async () => (await node.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync()).Status == HealthStatus.Unhealthy,
            "the node still unable to read while the connection waits");
        Assert.False(ping.IsCompleted, "the connection must not be served before the node reads the stream");

        await server.RestartAsync();

        Assert.Equal(connection.ConnectionId, await Eventually.WithinAsync(ping, "the held connection to be served once Redis is up", TimeSpan.FromSeconds(60)));
        await node.HubContext.Clients.All.SendAsync(TestClient.SendMethod, "after redis came up");
        Assert.Equal("after redis came up", await Eventually.WithinAsync(received.Task, "a message through the stream"));
        Assert.Equal(HubConnectionState.Connected, connection.State);
    }

    /// <inheritdoc />
    public Task InitializeAsync() => Task.CompletedTask;

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        foreach (var multiplexer in _multiplexers)
        {
            await multiplexer.DisposeAsync();
        }
    }
}
