using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.StackExchangeRedis;
using StackExchange.Redis;

namespace ChatNode.Identity;

/// <summary>
/// Data Protection (what signs and encrypts the auth cookie) with one key ring for every node. By default the key ring
/// is a Redis list under the app's keys (<see cref="ChatKeys.DataProtectionKeys"/>), and the application name is fixed,
/// so a cookie issued by one node is valid on all of them. <c>DataProtection:KeyStore=Directory</c> with
/// <c>DataProtection:KeyDirectory</c> keeps the keys in a local folder instead, as ASP.NET Core does by default: then
/// each machine has its own keys, and a node rejects the cookies of the others (the tests show it).
/// </summary>
internal static class ChatDataProtection
{
    /// <summary>Shared by every node: the cookies' protector is derived from it, so it must be the same everywhere.</summary>
    public const string ApplicationName = "SignalR.RedisStreams.ChatNode";

    /// <summary>Configuration key of where the keys are kept: <c>Redis</c> (the default) or <c>Directory</c>.</summary>
    public const string KeyStoreKey = "DataProtection:KeyStore";

    /// <summary>Configuration key of the folder for <c>DataProtection:KeyStore=Directory</c>.</summary>
    public const string KeyDirectoryKey = "DataProtection:KeyDirectory";

    /// <summary>Adds Data Protection as configured; throws, naming the option, when the configuration is invalid.</summary>
    public static IServiceCollection AddChatDataProtection(this IServiceCollection services, IConfiguration configuration, ChatKeys keys)
    {
        var store = configuration[KeyStoreKey];
        var directory = configuration[KeyDirectoryKey];
        var dataProtection = services.AddDataProtection().SetApplicationName(ApplicationName);

        if (string.IsNullOrWhiteSpace(store) || store.Equals("Redis", StringComparison.OrdinalIgnoreCase))
        {
            if (!string.IsNullOrWhiteSpace(directory))
            {
                throw new InvalidOperationException($"{KeyDirectoryKey} is set ('{directory}') but {KeyStoreKey} is Redis: the keys are kept in Redis only. Remove {KeyDirectoryKey}, or set {KeyStoreKey}=Directory.");
            }

            // The key ring on the app's shared multiplexer (AddRedisClient), read with LRANGE and appended with RPUSH.
            services.AddOptions<KeyManagementOptions>().Configure<IConnectionMultiplexer>((options, redis) =>
                options.XmlRepository = new RedisXmlRepository(() => redis.GetDatabase(), keys.DataProtectionKeys));
        }
        else if (store.Equals("Directory", StringComparison.OrdinalIgnoreCase))
        {
            if (string.IsNullOrWhiteSpace(directory))
            {
                throw new InvalidOperationException($"{KeyDirectoryKey} must name a folder when {KeyStoreKey} is Directory.");
            }

            dataProtection.PersistKeysToFileSystem(new DirectoryInfo(directory));
        }
        else
        {
            throw new InvalidOperationException($"{KeyStoreKey} must be Redis or Directory (was '{store}').");
        }

        return services;
    }
}
