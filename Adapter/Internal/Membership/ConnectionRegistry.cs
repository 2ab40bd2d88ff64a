using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The Redis hash of which node holds which connection (<c>…:connections</c>): written when a connection arrives,
/// removed when it leaves, written again after Redis restarted empty, cleaned of the connections of a node that is
/// gone; asked when a group change or a client result targets a connection this node does not hold.
/// </summary>
internal sealed class ConnectionRegistry(RedisStreamsKeys keys, string nodeId, Func<ValueTask<IDatabase>> database, Func<string, bool> isGone, ILogger logger)
{
    public async Task AddAsync(string connectionId)
    {
        try
        {
            await (await database()).HashSetAsync(keys.Connections, connectionId, nodeId);
        }
        catch (Exception ex) when (Retry.IsTransient(ex))
        {
            Log.RegistryFailed(logger, ex);
        }
    }

    public async Task RemoveAsync(string connectionId)
    {
        try
        {
            await (await database()).HashDeleteAsync(keys.Connections, connectionId);
        }
        catch (Exception ex) when (Retry.IsTransient(ex))
        {
            Log.RegistryFailed(logger, ex);
        }
    }

    /// <summary>The node holding the connection, or null when no live node does.</summary>
    public async Task<string?> FindOwnerAsync(string connectionId)
    {
        var owner = (string?)await (await database()).HashGetAsync(keys.Connections, connectionId);
        return owner is null || isGone(owner) ? null : owner;
    }

    /// <summary>Writes this node's connections again (Redis restarted without its data).</summary>
    public async Task RewriteAsync(IEnumerable<string> connectionIds)
    {
        try
        {
            var entries = connectionIds.Select(id => new HashEntry(id, nodeId)).ToArray();
            if (entries.Length > 0)
            {
                await (await database()).HashSetAsync(keys.Connections, entries);
            }
        }
        catch (Exception ex) when (Retry.IsTransient(ex))
        {
            Log.RegistryFailed(logger, ex);
        }
    }

    /// <summary>Removes the connections of a node that is gone.</summary>
    public async Task ForgetNodeAsync(string node)
    {
        try
        {
            var db = await database();
            await foreach (var entry in db.HashScanAsync(keys.Connections, pageSize: 500))
            {
                if (entry.Value == node)
                {
                    await db.HashDeleteAsync(keys.Connections, entry.Name);
                }
            }
        }
        catch (Exception ex) when (Retry.IsTransient(ex))
        {
            Log.RegistryFailed(logger, ex);
        }
    }
}
