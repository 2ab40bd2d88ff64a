using System.Globalization;
using System.Text;

namespace SignalR.RedisStreams;

/// <summary>
/// The Redis ACL rights the backplane needs, and no more: the commands it runs (<see cref="Commands"/>) on the keys
/// it owns (<see cref="KeyPattern"/>, everything under the hash tag of <c>KeyPrefix + StreamName</c>), and no pub/sub channel.
/// <see cref="Rules"/> gives them as the rules of an <c>ACL SETUSER</c> line. At start-up each node checks, with
/// <c>redis.acl_check_cmd</c> (Redis 7.0 and later), that its user has every one of these rights, and fails the host's
/// start with an <see cref="InvalidOperationException"/> naming what is missing, rather than starting and then retrying
/// every send until it times out.
/// </summary>
/// <remarks>This list is the one place the backplane's commands are declared. A change to the backplane that runs a
/// new command adds it here (the tests run the backplane as a user with exactly these rights and fail on any command
/// or key Redis refuses). An application that uses the same Redis connection for more (a presence list, Data
/// Protection keys) adds its own rules after these, e.g. <c>ACL SETUSER chat ... ~presence:* +sadd</c>.</remarks>
public static class RedisStreamsAcl
{
    /// <summary>Each command (lower case, <c>command|subcommand</c> for a subcommand), with sample arguments for the
    /// start-up check (<c>{key}</c> stands for a key of the backplane), and why the backplane runs it.</summary>
    private static readonly (string Command, string[] Arguments, string Why)[] Table =
    [
        // The client library's connection handshake and keep-alive (StackExchange.Redis).
        ("ping", [], "StackExchange.Redis keep-alive and connection check"),
        ("echo", ["x"], "StackExchange.Redis connection check"),
        ("client|setname", ["x"], "StackExchange.Redis names each connection (signalr-streams-<node>)"),
        ("client|id", [], "StackExchange.Redis learns each connection's id"),
        ("select", ["0"], "StackExchange.Redis selects the database"),
        ("info", [], "StackExchange.Redis reads the server's version and role"),
        ("script|load", ["return 1"], "StackExchange.Redis loads each script once, then calls it by hash"),
        // Scripts: the idempotent append and the start position. Every command a script calls is listed below too
        // (Redis checks each call of a script against the user's rights).
        ("eval", ["return 1", "1", "{key}"], "the append, repair and start-position scripts"),
        ("evalsha", ["0000000000000000000000000000000000000000", "1", "{key}"], "the same scripts, once Redis has cached them"),
        ("time", [], "the append script's clock (in the script)"),
        ("xadd", ["{key}", "*", "e", "v"], "appending packets to the shared stream and the inboxes (in the script)"),
        ("xtrim", ["{key}", "MAXLEN", "~", "1"], "keeping each stream near MaxLength (in the script)"),
        ("xrevrange", ["{key}", "+", "-", "COUNT", "1"], "the last entry of a stream: start position, clock repair (in scripts)"),
        ("xread", ["COUNT", "1", "STREAMS", "{key}", "0-0"], "the reader, on its own connection"),
        ("xrange", ["{key}", "-", "+", "COUNT", "1"], "a recovery's replay, page by page (connection-state recovery)"),
        ("xinfo|stream", ["{key}"], "a recovery: whether entries after the client's position were trimmed (connection-state recovery)"),
        ("get", ["{key}"], "the epoch and the clock"),
        ("set", ["{key}", "v"], "the clock (in the script)"),
        ("setnx", ["{key}", "v"], "the epoch, set by whichever node comes first"),
        ("hget", ["{key}", "f"], "a sender's last sequence (in the script); the node holding a connection"),
        ("hset", ["{key}", "f", "v"], "the sequences (in the script); the connection registry; recovery sessions"),
        ("hmset", ["{key}", "f", "v", "g", "w"], "recovery sessions: several fields at once (StackExchange.Redis writes them with HMSET)"),
        ("hsetnx", ["{key}", "f", "v"], "a recovery session's group join (the first join's position stays)"),
        ("hmget", ["{key}", "f", "g"], "the nodes holding several connections at once"),
        ("hgetall", ["{key}"], "every sender's last sequence at start (in the script); the lag gauge; loading a recovery session"),
        ("hdel", ["{key}", "f"], "removing connections from the registry; a recovery session's group leave"),
        ("hscan", ["{key}", "0"], "forgetting the connections of a node that is gone"),
        ("pexpire", ["{key}", "1000"], "the append script renews an inbox's lifetime (in the script); recovery sessions' expiry"),
        ("expire", ["{key}", "3600"], "inboxes expire an hour after their node's last heartbeat"),
        ("unlink", ["{key}"], "a node that stops cleanly deletes its inbox (StackExchange.Redis sends UNLINK for a delete)"),
    ];

    /// <summary>StackExchange.Redis connection-string options that turn off what its connection handshake tries beyond
    /// <see cref="Commands"/>: the tie-breaker key (<c>GET __Booksleeve_TieBreak</c>), the configuration channel
    /// (<c>SUBSCRIBE __Booksleeve_MasterChanged</c>), <c>CONFIG GET</c> and <c>CLUSTER NODES</c>. Without them Redis
    /// refuses those to a user with only <see cref="Rules"/> (each refusal is in <c>ACL LOG</c>) and StackExchange.Redis
    /// goes on without them; with them nothing is refused. Append to the connection string:
    /// <c>"redis:6379,user=signalr,password=...," + RedisStreamsAcl.ConnectionOptions</c>. Not for a cluster or a
    /// replicated Redis, where StackExchange.Redis needs those.</summary>
    public const string ConnectionOptions = "tiebreaker=,configChannel=,$CONFIG=,$CLUSTER=";

    /// <summary>The commands the backplane runs, lower case, subcommands as <c>command|subcommand</c>.</summary>
    public static IReadOnlyList<string> Commands { get; } = [.. Table.Select(t => t.Command)];

    /// <summary>The ACL key pattern of every key the backplane touches: their common start followed by anything, with
    /// glob characters escaped. The start is <c>{KeyPrefix + StreamName</c> (the opening of the hash tag of every stream,
    /// <c>{signalr}</c> with one, <c>{signalr:0}</c>... with several), or the name as it is when it holds a tag
    /// already and there is one stream.</summary>
    public static string KeyPattern(RedisStreamsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var name = options.KeyPrefix + options.StreamName;
        var start = options.StreamCount <= 1 && Internal.StreamShards.TagOf(name) is not null
            ? name
            : "{" + name.Replace("{", "", StringComparison.Ordinal).Replace("}", "", StringComparison.Ordinal);
        var text = new StringBuilder();
        foreach (var c in start)
        {
            if (c is '*' or '?' or '[' or ']' or '\\')
            {
                text.Append('\\');
            }

            text.Append(c);
        }

        return text.Append('*').ToString();
    }

    /// <summary>The ACL rules of a user that can run the backplane and nothing else, for <c>ACL SETUSER &lt;name&gt; on
    /// &gt;&lt;password&gt; {rules}</c>: <c>resetkeys ~&lt;KeyPattern&gt; resetchannels -@all +&lt;command&gt; ...</c>.</summary>
    public static string Rules(RedisStreamsOptions options) =>
        "resetkeys ~" + KeyPattern(options) + " resetchannels -@all " + string.Join(' ', Commands.Select(c => "+" + c));

    /// <summary>The start-up check: a Lua script that asks Redis, for each command with its sample arguments on the
    /// backplane's key (KEYS[1]), whether the current user may run it, and returns those it may not.</summary>
    internal static string CheckScript { get; } = BuildCheckScript();

    private static string BuildCheckScript()
    {
        var text = new StringBuilder("local denied = {}\n");
        foreach (var (command, arguments, _) in Table)
        {
            var parts = command.Split('|').Concat(arguments).Select(a => a == "{key}" ? "KEYS[1]" : "'" + a + "'");
            text.Append(CultureInfo.InvariantCulture, $"if not redis.acl_check_cmd({string.Join(", ", parts)}) then denied[#denied + 1] = '{command}' end\n");
        }

        return text.Append("return denied\n").ToString();
    }
}
