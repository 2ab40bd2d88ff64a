namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The node's readers, one per stream (<c>StreamCount</c>, see <see cref="StreamShards"/>), each on its own dedicated
/// connection, seen as one: the node is positioned when every reader is, its lag is the worst reader's. With one stream
/// this is that stream's reader. Connection-state recovery (which needs one stream) reads positions from the first.
/// </summary>
internal sealed class ShardReaders
{
    private readonly StreamReadLoop[] _readers;

    public ShardReaders(StreamReadLoop[] readers)
    {
        _readers = readers;
        Positioned = readers.Length == 1 ? readers[0].Positioned : Task.WhenAll(readers.Select(r => r.Positioned));
        FirstAttempt = readers.Length == 1 ? readers[0].FirstAttempt : Task.WhenAll(readers.Select(r => r.FirstAttempt));
    }

    public IReadOnlyList<StreamReadLoop> All => _readers;

    /// <summary>Completes once every reader reads from a concrete position.</summary>
    public Task Positioned { get; }

    /// <summary>Completes once every reader is positioned or failed its first attempt; faults as the first reader that
    /// found rights missing.</summary>
    public Task FirstAttempt { get; }

    public bool IsPositioned => Positioned.IsCompletedSuccessfully;

    /// <summary>The longest time since a reader's last XREAD completed.</summary>
    public TimeSpan SinceLastRead => _readers.Max(r => r.SinceLastRead);

    /// <summary>The worst reader's lag.</summary>
    public TimeSpan LastReadLag => _readers.Max(r => r.LastReadLag);

    /// <summary>Packets appended for this node and not read yet, summed over the streams.</summary>
    public long PacketsBehind => _readers.Sum(r => r.PacketsBehind);

    /// <summary>The first stream's processed position (connection-state recovery runs with one stream only).</summary>
    public DeliveryPosition Processed => _readers[0].Processed;

    public Task WhenProcessedAsync(DeliveryPosition target, TimeSpan timeout, CancellationToken cancellationToken)
        => _readers[0].WhenProcessedAsync(target, timeout, cancellationToken);

    public Task SamplePacketsBehindAsync() => Task.WhenAll(_readers.Select(r => r.SamplePacketsBehindAsync()));

    public Task[] Run() => [.. _readers.Select(r => Task.Run(r.RunAsync))];
}
