namespace SignalR.RedisStreams.Tests.Cluster;

/// <summary>One private Redis Cluster (3 masters, 3 replicas) per test class that does not break it
/// (<c>IClassFixture&lt;RedisClusterFixture&gt;</c>); tests isolate by stream name and key prefix, as on one Redis.</summary>
public sealed class RedisClusterFixture : IAsyncLifetime
{
    private RedisCluster? _cluster;

    /// <summary>The running cluster.</summary>
    public RedisCluster Cluster => _cluster ?? throw new InvalidOperationException("The fixture is not initialized.");

    /// <inheritdoc />
    public async Task InitializeAsync() => _cluster = await RedisCluster.StartAsync();

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}
