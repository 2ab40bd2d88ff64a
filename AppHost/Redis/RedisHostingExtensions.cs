using System.Diagnostics;
using System.Globalization;
using AppHost.Faults;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace AppHost.Redis;

/// <summary>
/// Adds the app's Redis: a container (<c>AddRedis</c>) where a container runtime answers, else a local
/// <c>redis-server</c> process. Configuration:
/// <list type="bullet">
/// <item><c>Redis:Mode</c> = <c>auto</c> (default: container if <c>docker info</c> answers, else executable) |
/// <c>executable</c> | <c>container</c>.</item>
/// <item><c>Redis:Persistence</c> = <c>aof</c> (default: append-only file, fsync always; data survives a restart of the
/// resource) | <c>none</c> (no RDB, no AOF: a restart is an empty Redis).</item>
/// </list>
/// The local redis-server also gets the dashboard's fault commands (<see cref="FaultCommands"/>: freeze, kill client
/// connections, restart with or without its data); a container has the dashboard's own Stop, Start and Restart only.
/// </summary>
public static class RedisHostingExtensions
{
    /// <summary>Configuration key of the hosting mode.</summary>
    public const string ModeKey = "Redis:Mode";

    /// <summary>Configuration key of the persistence mode.</summary>
    public const string PersistenceKey = "Redis:Persistence";

    /// <summary>Configuration key of TLS: <c>true</c> makes the local redis-server listen with TLS only, on a
    /// certificate made for the run (<see cref="RedisTlsFiles"/>); default <c>false</c>.</summary>
    public const string TlsKey = "Redis:Tls";

    /// <summary>Folder (under the AppHost's directory) holding one data directory per AppHost run.</summary>
    public const string DataFolderName = ".redis-data";

    private const string InstallHint =
        "Install it with `sudo apt-get install redis-server` (or start the app with ./run-app.sh, which installs it).";

    /// <summary>Adds Redis named <paramref name="name"/>, hosted as <c>Redis:Mode</c> says.</summary>
    public static IResourceBuilder<IResourceWithConnectionString> AddChatRedis(this IDistributedApplicationBuilder builder, string name)
    {
        ArgumentNullException.ThrowIfNull(builder);

        var mode = (builder.Configuration[ModeKey] ?? "auto").Trim().ToLowerInvariant();
        var persistence = (builder.Configuration[PersistenceKey] ?? "aof").Trim().ToLowerInvariant();
        if (persistence is not ("aof" or "none"))
        {
            throw new RedisHostingException($"{PersistenceKey} must be 'aof' or 'none', not '{persistence}'.");
        }

        var tlsText = (builder.Configuration[TlsKey] ?? "false").Trim().ToLowerInvariant();
        if (tlsText is not ("true" or "false"))
        {
            throw new RedisHostingException($"{TlsKey} must be 'true' or 'false', not '{tlsText}'.");
        }

        var tls = tlsText == "true";
        if (tls && mode == "container")
        {
            throw new RedisHostingException($"{TlsKey}=true needs the local redis-server ({ModeKey}=executable or auto without a container runtime).");
        }

        var runtime = builder.Configuration["ASPIRE_CONTAINER_RUNTIME"] ?? "docker";
        switch (mode)
        {
            case "executable":
                return builder.AddRedisServer(name, persistence, tls);
            case "container":
                if (!ContainerRuntimeProbe.IsAvailable(runtime, TimeSpan.FromSeconds(5)))
                {
                    throw new RedisHostingException(
                        $"{ModeKey}=container, but `{runtime} info` does not answer: no container runtime. Use {ModeKey}=executable (local redis-server).");
                }

                return builder.AddRedisContainer(name, persistence);
            case "auto":
                return !tls && ContainerRuntimeProbe.IsAvailable(runtime, TimeSpan.FromSeconds(5))
                    ? builder.AddRedisContainer(name, persistence)
                    : builder.AddRedisServer(name, persistence, tls);
            default:
                throw new RedisHostingException($"{ModeKey} must be 'auto', 'executable' or 'container', not '{mode}'.");
        }
    }

    private static IResourceBuilder<IResourceWithConnectionString> AddRedisContainer(
        this IDistributedApplicationBuilder builder, string name, string persistence)
    {
        var redis = builder.AddRedis(name);
        return persistence == "aof"
            ? redis.WithArgs("--appendonly", "yes", "--appendfsync", "always")
            : redis.WithArgs("--save", "", "--appendonly", "no");
    }

    private static IResourceBuilder<IResourceWithConnectionString> AddRedisServer(
        this IDistributedApplicationBuilder builder, string name, string persistence, bool tls)
    {
        var command = ContainerRuntimeProbe.FindOnPath("redis-server")
            ?? throw new RedisHostingException($"Redis is needed, but there is no container runtime and no `redis-server` on PATH. {InstallHint}");

        var dataDirectory = CreateDataDirectory(builder.AppHostDirectory);
        var password = ParameterResourceBuilderExtensions.CreateDefaultPasswordParameter(builder, $"{name}-password", special: false);
        var chatPassword = ParameterResourceBuilderExtensions.CreateDefaultPasswordParameter(builder, $"{name}-chatnode-password", special: false);
        var resource = new RedisServerResource(name, command, dataDirectory, password, chatPassword)
        {
            // Next to the data directory, not in it: "Restart empty" deletes everything in the data directory.
            Tls = tls ? RedisTlsFiles.Create(Directory.CreateDirectory(dataDirectory + "-tls").FullName) : null,
        };

        var healthCheckKey = $"{name}_ping";
        builder.Services.AddHealthChecks().Add(new HealthCheckRegistration(
            healthCheckKey, _ => new RedisPingHealthCheck(resource), failureStatus: null, tags: null));

        return builder.AddResource(resource)
            .WithEndpoint(name: RedisServerResource.PrimaryEndpointName, scheme: "tcp")
            .WithArgs(context =>
            {
                if (resource.Tls is { } files)
                {
                    // TLS only: no plain-text port at all.
                    context.Args.Add("--port");
                    context.Args.Add("0");
                    context.Args.Add("--tls-port");
                    context.Args.Add(resource.PrimaryEndpoint.Property(EndpointProperty.TargetPort));
                    context.Args.Add("--tls-cert-file");
                    context.Args.Add(files.Certificate);
                    context.Args.Add("--tls-key-file");
                    context.Args.Add(files.Key);
                    context.Args.Add("--tls-ca-cert-file");
                    context.Args.Add(files.CaCertificate);
                    context.Args.Add("--tls-auth-clients");
                    context.Args.Add("no");
                }
                else
                {
                    context.Args.Add("--port");
                    context.Args.Add(resource.PrimaryEndpoint.Property(EndpointProperty.TargetPort));
                }
                context.Args.Add("--bind");
                context.Args.Add("127.0.0.1");
                context.Args.Add("--requirepass");
                context.Args.Add(resource.PasswordParameter);
                // The chat nodes' user: only the backplane's commands on its keys (ChatRedisAcl).
                context.Args.Add("--user");
                context.Args.Add(ChatRedisAcl.UserName);
                context.Args.Add("reset");
                context.Args.Add("on");
                context.Args.Add(ReferenceExpression.Create($">{resource.ChatPasswordParameter}"));
                foreach (var rule in ChatRedisAcl.Rules.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                {
                    context.Args.Add(rule);
                }
                context.Args.Add("--dir");
                context.Args.Add(dataDirectory);
                if (persistence == "aof")
                {
                    context.Args.Add("--appendonly");
                    context.Args.Add("yes");
                    context.Args.Add("--appendfsync");
                    context.Args.Add("always");
                }
                else
                {
                    context.Args.Add("--save");
                    context.Args.Add("");
                    context.Args.Add("--appendonly");
                    context.Args.Add("no");
                }
            })
            .WithHealthCheck(healthCheckKey)
            .WithRedisFaultCommands();
    }

    /// <summary>
    /// Creates <c>.redis-data/run-{pid}-{time}</c> for this AppHost run, and removes the folders of earlier runs whose
    /// AppHost process is gone.
    /// </summary>
    internal static string CreateDataDirectory(string appHostDirectory)
    {
        var root = Path.Combine(appHostDirectory, DataFolderName);
        Directory.CreateDirectory(root);
        foreach (var old in Directory.EnumerateDirectories(root, "run-*"))
        {
            var parts = Path.GetFileName(old).Split('-');
            if (parts.Length >= 2 && int.TryParse(parts[1], CultureInfo.InvariantCulture, out var pid) && !IsAlive(pid))
            {
                try
                {
                    Directory.Delete(old, recursive: true);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    // Another AppHost may be cleaning up at the same time; the folder is removed next time.
                }
            }
        }

        var stamp = DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture);
        var directory = Path.Combine(root, $"run-{Environment.ProcessId}-{stamp}");
        Directory.CreateDirectory(directory);
        return directory;
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
