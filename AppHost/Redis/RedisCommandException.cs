namespace AppHost.Redis;

/// <summary>Redis answered a command of the AppHost's own (health check, fault commands) with an error, or not at all.</summary>
public sealed class RedisCommandException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RedisCommandException() { }

    /// <summary>Creates the exception with Redis' error text.</summary>
    public RedisCommandException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public RedisCommandException(string message, Exception innerException) : base(message, innerException) { }
}
