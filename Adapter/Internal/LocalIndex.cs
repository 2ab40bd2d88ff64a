using Microsoft.AspNetCore.SignalR;

namespace SignalR.RedisStreams.Internal;

/// <summary>This node's connections by group name or by user id.</summary>
internal sealed class LocalIndex
{
    private readonly Dictionary<string, HashSet<HubConnectionContext>> _members = new(StringComparer.Ordinal);

    /// <summary>Per key, its members as an array that is never changed once made (made again after a change of the
    /// key's members): a send to one group or user copies nothing. Membership changes far less often than sends.</summary>
    private readonly Dictionary<string, HubConnectionContext[]> _snapshots = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public void Add(string key, HubConnectionContext connection)
    {
        lock (_lock)
        {
            if (!_members.TryGetValue(key, out var set))
            {
                _members[key] = set = [];
            }
            set.Add(connection);
            _snapshots.Remove(key);
        }
    }

    public void Remove(string key, HubConnectionContext connection)
    {
        lock (_lock)
        {
            if (_members.TryGetValue(key, out var set) && set.Remove(connection))
            {
                _snapshots.Remove(key);
                if (set.Count == 0)
                {
                    _members.Remove(key);
                }
            }
        }
    }

    public void RemoveEverywhere(HubConnectionContext connection)
    {
        lock (_lock)
        {
            List<string>? empty = null;
            foreach (var (key, set) in _members)
            {
                if (set.Remove(connection))
                {
                    _snapshots.Remove(key);
                    if (set.Count == 0)
                    {
                        (empty ??= []).Add(key);
                    }
                }
            }
            empty?.ForEach(k => _members.Remove(k));
        }
    }

    /// <summary>The members of any of the keys, each once. For one key, the snapshot array kept until its members
    /// change (not to be written to).</summary>
    public HubConnectionContext[] Members(IReadOnlyList<string> keys)
    {
        lock (_lock)
        {
            if (keys.Count == 1)
            {
                if (_snapshots.TryGetValue(keys[0], out var snapshot))
                {
                    return snapshot;
                }
                if (!_members.TryGetValue(keys[0], out var one))
                {
                    return [];
                }
                return _snapshots[keys[0]] = [.. one];
            }
            var result = new HashSet<HubConnectionContext>();
            foreach (var key in keys)
            {
                if (_members.TryGetValue(key, out var set))
                {
                    result.UnionWith(set);
                }
            }
            return [.. result];
        }
    }
}
