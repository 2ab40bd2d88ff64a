using SignalR.RedisStreams;

namespace ChatNode;

/// <summary>
/// The Redis keys of the chat app itself (beyond the backplane's). They start like every backplane key, with
/// <c>{</c> + <c>RedisStreams:KeyPrefix + RedisStreams:StreamName</c> (<c>signalr</c> by default), followed by
/// <c>:chat}:</c>, so one key pattern (<c>{signalr*</c>, <see cref="RedisStreamsAcl.KeyPattern"/>) covers every key a
/// chat node touches, on one Redis or on a cluster.
/// </summary>
internal sealed class ChatKeys
{
    private ChatKeys(string prefix) => Prefix = prefix;

    /// <summary>What every chat key starts with: <c>{signalr:chat}:</c> by default.</summary>
    public string Prefix { get; }

    /// <summary>List: the Data Protection key ring shared by every node (LRANGE, RPUSH).</summary>
    public string DataProtectionKeys => Prefix + "dataprotection-keys";

    /// <summary>Sorted set: who is online, one member per connection, scored by its node's last refresh (ms).</summary>
    public string Presence => Prefix + "presence";

    /// <summary>The keys of the app whose backplane options are in <paramref name="configuration"/>'s RedisStreams section.</summary>
    public static ChatKeys FromConfiguration(IConfiguration configuration)
    {
        var options = new RedisStreamsOptions();
        configuration.GetSection("RedisStreams").Bind(options);
        var name = options.KeyPrefix + options.StreamName;
        // A name that holds a hash tag already keeps it (and then the backplane's keys start with the name).
        var tagged = name.IndexOf('{', StringComparison.Ordinal) is var open and >= 0 && name.IndexOf('}', open + 1) > open + 1;
        return new ChatKeys(tagged && options.StreamCount <= 1 ? name + ":chat:" : "{" + name.Replace("{", "", StringComparison.Ordinal).Replace("}", "", StringComparison.Ordinal) + ":chat}:");
    }
}
