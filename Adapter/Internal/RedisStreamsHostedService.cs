using Microsoft.Extensions.Hosting;

namespace SignalR.RedisStreams.Internal;

/// <summary>Starts the node with the host (so it reads the stream before the first client connects) and stops it
/// cleanly (drain the outbox, say goodbye).</summary>
internal sealed class RedisStreamsHostedService(RedisStreamsBackplane node) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _ = node.EnsureStarted();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => node.StopAsync(cancellationToken);
}
