namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>The hub protocol a test client speaks.</summary>
public enum HubProtocolKind
{
    /// <summary>The JSON hub protocol (SignalR's default).</summary>
    Json,

    /// <summary>The MessagePack hub protocol.</summary>
    MessagePack,
}
