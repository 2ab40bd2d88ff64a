using Microsoft.AspNetCore.SignalR;

namespace SignalR.RedisStreams.Internal;

/// <summary>This node's connections by group name or by user id.</summary>
internal sealed class LocalIndex
{
    private readonly Dictionary<string, HashSet<HubConnectionContext>> _members = new(StringComparer.Ordinal);
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
        }
    }

    public void Remove(string key, HubConnectionContext connection)
    {
        lock (_lock)
        {
            if (_members.TryGetValue(key, out var set) && set.Remove(connection) && set.Count == 0)
            {
                _members.Remove(key);
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
                if (set.Remove(connection) && set.Count == 0)
                {
                    (empty ??= []).Add(key);
                }
            }
            empty?.ForEach(k => _members.Remove(k));
        }
    }

    /// <summary>The members of any of the keys, each once.</summary>
    public IReadOnlyCollection<HubConnectionContext> Members(IReadOnlyList<string> keys)
    {
        lock (_lock)
        {
            if (keys.Count == 1)
            {
                return _members.TryGetValue(keys[0], out var one) ? [.. one] : [];
            }
            var result = new HashSet<HubConnectionContext>();
            foreach (var key in keys)
            {
                if (_members.TryGetValue(key, out var set))
                {
                    result.UnionWith(set);
                }
            }
            return result;
        }
    }
}
