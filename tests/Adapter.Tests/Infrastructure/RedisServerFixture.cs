namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>One private redis-server per test class (<c>IClassFixture&lt;RedisServerFixture&gt;</c>). Tests in the class
/// isolate from each other by using their own stream name and key prefix, which <see cref="TestCluster"/> picks.</summary>
public sealed class RedisServerFixture : IAsyncLifetime
{
    private RedisServer? _server;

    /// <summary>The running server.</summary>
    public RedisServer Server => _server ?? throw new InvalidOperationException("The fixture is not initialized.");

    /// <inheritdoc />
    public async Task InitializeAsync() => _server = await RedisServer.StartAsync();

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
