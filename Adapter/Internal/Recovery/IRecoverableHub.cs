using Microsoft.AspNetCore.SignalR;

namespace SignalR.RedisStreams.Internal;

/// <summary>What <see cref="ConnectionRecovery"/> asks of a hub's manager.</summary>
internal interface IRecoverableHub
{
    /// <summary>The connection is live on this node: sends reach it (called under the recovery's cut).</summary>
    void AddLocal(HubConnectionContext connection);

    /// <summary>Adds the connection to a group of this node's index (a group restored from its session).</summary>
    void AddToLocalGroup(HubConnectionContext connection, string groupName);

    /// <summary>Writes a message to the connection; a failed write is logged, not thrown.</summary>
    ValueTask WriteAsync(HubConnectionContext connection, SerializedHubMessage message);
}
