namespace AppHost.Redis;

/// <summary>Redis cannot be started the way the configuration asks; the message says what to do.</summary>
public sealed class RedisHostingException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RedisHostingException() { }

    /// <summary>Creates the exception with the message shown to the user.</summary>
    public RedisHostingException(string message) : base(message) { }

    /// <summary>Creates the exception with the message shown to the user and its cause.</summary>
    public RedisHostingException(string message, Exception innerException) : base(message, innerException) { }
}
