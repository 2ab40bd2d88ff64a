namespace SignalR.RedisStreams;

/// <summary>A packet could not be handed to Redis within <see cref="RedisStreamsOptions.PublishTimeout"/> (Redis
/// unreachable, or the outbox full), or the node was shutting down. The packet was not published and will not be.</summary>
public sealed class RedisStreamsPublishException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RedisStreamsPublishException() { }

    /// <summary>Creates the exception with a message.</summary>
    public RedisStreamsPublishException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the last Redis error.</summary>
    public RedisStreamsPublishException(string message, Exception? innerException) : base(message, innerException) { }
}
