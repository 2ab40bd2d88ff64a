using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The Redis hash of which node holds which connection (<c>…:connections</c>): written when a connection arrives,
/// removed when it leaves, written again after Redis restarted empty, cleaned of the connections of a node that is
/// gone; asked when a send, a group change or a client result targets a connection this node does not hold, so that
/// the packet goes to the inbox of the one node that holds it.
/// <para>Owners found are cached: a connection id is never reused and a connection never moves to another node, so an
/// answer stays true for the connection's life (after it, a send to its old node finds nobody there, as it would have
/// anyway). The cache forgets the connections of a node that is gone, and is emptied when it reaches
/// <see cref="CacheCapacity"/> entries.</para>
/// </summary>
internal sealed class ConnectionRegistry(RedisStreamsKeys keys, string nodeId, Func<ValueTask<IDatabase>> database, Func<string, bool> isGone, ILogger logger)
{
    /// <summary>Most owners cached.</summary>
    public const int CacheCapacity = 100_000;

    private readonly ConcurrentDictionary<string, string> _owners = new(StringComparer.Ordinal);

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
        if (!TryGetKnownOwner(connectionId, out var owner))
        {
            await LookUpAsync([connectionId]);
            TryGetKnownOwner(connectionId, out owner);
        }
        return owner;
    }

    /// <summary>The live node known (cached) to hold the connection.</summary>
    public bool TryGetKnownOwner(string connectionId, [NotNullWhen(true)] out string? owner)
        => _owners.TryGetValue(connectionId, out owner) && !isGone(owner);

    /// <summary>Asks Redis, in one command, for the owners of <paramref name="connectionIds"/> and caches those held by
    /// a live node; read them with <see cref="TryGetKnownOwner"/>. Redis errors are thrown (the caller retries).</summary>
    public async Task LookUpAsync(IReadOnlyList<string> connectionIds)
    {
        if (connectionIds.Count == 0)
        {
            return;
        }
        var fields = new RedisValue[connectionIds.Count];
        for (var i = 0; i < fields.Length; i++)
        {
            fields[i] = connectionIds[i];
        }
        var owners = await (await database()).HashGetAsync(keys.Connections, fields);
        for (var i = 0; i < owners.Length; i++)
        {
            if ((string?)owners[i] is { } owner && !isGone(owner))
            {
                Remember(connectionIds[i], owner);
            }
        }
    }

    private void Remember(string connectionId, string owner)
    {
        if (_owners.Count >= CacheCapacity)
        {
            _owners.Clear();
        }
        _owners[connectionId] = owner;
    }

    /// <summary>Forgets the cached owners that are <paramref name="node"/> (it is gone).</summary>
    private void ForgetCachedOwners(string node)
    {
        foreach (var (connectionId, owner) in _owners)
        {
            if (owner == node)
            {
                _owners.TryRemove(connectionId, out _);
            }
        }
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

    /// <summary>Removes the connections of a node that is gone, from the cache and from Redis.</summary>
    public async Task ForgetNodeAsync(string node)
    {
        ForgetCachedOwners(node);
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
