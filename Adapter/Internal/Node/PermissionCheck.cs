using StackExchange.Redis;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The start-up check of the Redis user's rights (<see cref="RedisStreamsAcl"/>): one script asks Redis, with
/// <c>redis.acl_check_cmd</c>, whether the user may run each of the backplane's commands on its keys. A user that lacks
/// any of them stops the node's start with an <see cref="InvalidOperationException"/> that names the missing commands
/// and the ACL rules needed, instead of a node that starts and then retries every send until it times out.
/// </summary>
internal static class PermissionCheck
{
    /// <summary>Runs the check; returns normally when every right is there, or when the check itself cannot run on this
    /// Redis (before 7.0 there is no <c>redis.acl_check_cmd</c>). Throws <see cref="InvalidOperationException"/> when
    /// rights are missing; Redis being unreachable throws what the client throws (the caller retries).</summary>
    public static async Task RunAsync(IDatabase database, RedisStreamsKeys keys, RedisStreamsOptions options)
    {
        RedisResult result;
        try
        {
            result = await database.ScriptEvaluateAsync(RedisStreamsAcl.CheckScript, [keys.Stream]);
        }
        catch (RedisServerException ex) when (ex.Message.StartsWith("NOPERM", StringComparison.Ordinal))
        {
            // Not even the script (or not the key): the user lacks EVAL, or every key of the backplane.
            throw Missing(options, ex.Message, ex);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("acl_check_cmd", StringComparison.Ordinal))
        {
            return; // Redis before 7.0: nothing to check with.
        }

        var denied = ((string?[]?)result ?? []).OfType<string>().ToArray();
        if (denied.Length > 0)
        {
            throw Missing(options, "the user may not run " + string.Join(", ", denied) + " on the backplane's keys", null);
        }
    }

    /// <summary>True for the error <see cref="RunAsync"/> throws when rights are missing.</summary>
    public static bool IsMissingRights(Exception exception) => exception is InvalidOperationException && exception.Data.Contains(nameof(PermissionCheck));

    private static InvalidOperationException Missing(RedisStreamsOptions options, string what, Exception? inner)
    {
        var exception = new InvalidOperationException(
            $"The Redis user of the Redis Streams backplane lacks rights it needs ({what}). Give it at least these ACL rules: " +
            $"ACL SETUSER <user> on ><password> {RedisStreamsAcl.Rules(options)}", inner);
        exception.Data[nameof(PermissionCheck)] = true;
        return exception;
    }
}
