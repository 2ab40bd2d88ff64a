using Microsoft.Extensions.Hosting;

namespace SignalR.RedisStreams.Internal;

/// <summary>Starts the node with the host, so that it reads the stream before the first client connects, and stops it
/// cleanly (drain the outbox, say goodbye).</summary>
internal sealed class NodeHostedService(BackplaneNode node) : IHostedService
{
    /// <summary>Returns once the node's reader is positioned, or once its first attempt failed (Redis unreachable: the
    /// node starts anyway and keeps trying). A failing ConnectionFactory fails the host's start.</summary>
    public Task StartAsync(CancellationToken cancellationToken) => node.StartAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => node.StopAsync(cancellationToken);
}
