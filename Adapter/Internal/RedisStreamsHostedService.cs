using Microsoft.Extensions.Hosting;

namespace SignalR.RedisStreams.Internal;

/// <summary>Starts the node with the host (so it reads the stream before the first client connects) and stops it
/// cleanly (drain the outbox, say goodbye).</summary>
internal sealed class RedisStreamsHostedService(RedisStreamsBackplane node) : IHostedService
{
    /// <summary>Connects (without waiting for Redis to answer: the loops retry until it does); a failing
    /// ConnectionFactory fails the host's start.</summary>
    public Task StartAsync(CancellationToken cancellationToken) => node.EnsureStarted().WaitAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => node.StopAsync(cancellationToken);
}
