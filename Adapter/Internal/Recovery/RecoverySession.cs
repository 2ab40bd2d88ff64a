namespace SignalR.RedisStreams.Internal;

/// <summary>One recoverable session as kept in Redis (see <see cref="RedisStreamsKeys.Session"/>).</summary>
/// <param name="Token">The secret the client presents to recover; also the key's suffix.</param>
/// <param name="Hub">The hub it belongs to.</param>
/// <param name="User">The user id of its connection (null: none).</param>
/// <param name="ConnectionId">The connection that holds it now (or held it last).</param>
/// <param name="Node">The node that holds (or held) that connection: its inbox has the packets addressed to it.</param>
/// <param name="Groups">Its groups, each with the position at which the connection joined.</param>
internal sealed record RecoverySession(
    string Token, string Hub, string? User, string ConnectionId, string Node, IReadOnlyDictionary<string, DeliveryPosition> Groups)
{
    /// <summary>Whether a packet would have reached this session's connection (<paramref name="connectionId"/> is the
    /// connection that holds it now, if any): the filter of a replay and of the live packets held back meanwhile.</summary>
    public bool Wants(StreamEntry entry, string? connectionId)
    {
        switch (entry.Kind)
        {
            case EntryKind.All:
                return !IsExcluded(entry, connectionId);
            case EntryKind.Connections:
                foreach (var target in entry.Targets)
                {
                    if (target == ConnectionId || target == connectionId)
                    {
                        return true;
                    }
                }
                return false;
            case EntryKind.Groups:
                if (IsExcluded(entry, connectionId))
                {
                    return false;
                }
                foreach (var group in entry.Targets)
                {
                    if (Groups.TryGetValue(group, out var joined) && entry.Position > joined)
                    {
                        return true;
                    }
                }
                return false;
            case EntryKind.Users:
                return User is not null && entry.Targets.Contains(User, StringComparer.Ordinal);
            default:
                return false;
        }
    }

    private bool IsExcluded(StreamEntry entry, string? connectionId)
    {
        foreach (var excluded in entry.Excluded)
        {
            if (excluded == ConnectionId || excluded == connectionId)
            {
                return true;
            }
        }
        return false;
    }
}
