using System.Diagnostics;

namespace SignalR.RedisStreams.Internal;

/// <summary>What the node asks of each hub's manager (<see cref="RedisStreamsHubLifetimeManager{THub}"/>).</summary>
internal interface IHubManager
{
    /// <summary>Delivers a hub-scoped entry (new, already deduplicated) to this node's connections; returns how many
    /// connections it reached. Its writes may be gathered in <paramref name="writes"/>, which the reader writes out
    /// after the whole XREAD reply (under load, with the next replies': <see cref="HeldWrites"/>).</summary>
    ValueTask<int> DispatchAsync(StreamEntry entry, Activity? activity, CoalescedWrites writes);

    /// <summary>A node left or was declared dead: fail what waits on it.</summary>
    void NodeGone(string nodeId);

    /// <summary>The ids of this node's connections of this hub (to write the registry again after Redis lost it).</summary>
    IEnumerable<string> LocalConnectionIds { get; }
}
