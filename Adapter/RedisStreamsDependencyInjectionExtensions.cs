using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using SignalR.RedisStreams;
using SignalR.RedisStreams.Internal;
using StackExchange.Redis;

// Lives in Microsoft.Extensions.DependencyInjection, as Microsoft's AddStackExchangeRedis does, so no extra using is needed.
namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds the Redis Streams backplane to a SignalR server.</summary>
public static class RedisStreamsDependencyInjectionExtensions
{
    /// <summary>Uses the Redis Streams backplane. The connection is the <see cref="IConnectionMultiplexer"/> registered
    /// in DI (for example by Aspire's <c>AddRedisClient</c>), else <c>localhost:6379</c>.</summary>
    public static ISignalRServerBuilder AddRedisStreams(this ISignalRServerBuilder signalrBuilder)
        => AddRedisStreams(signalrBuilder, _ => { });

    /// <summary>Uses the Redis Streams backplane with the given connection string.</summary>
    public static ISignalRServerBuilder AddRedisStreams(this ISignalRServerBuilder signalrBuilder, string redisConnectionString)
        => AddRedisStreams(signalrBuilder, redisConnectionString, _ => { });

    /// <summary>Uses the Redis Streams backplane with the given connection string and options.</summary>
    public static ISignalRServerBuilder AddRedisStreams(this ISignalRServerBuilder signalrBuilder, string redisConnectionString, Action<RedisStreamsOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(redisConnectionString);
        ArgumentNullException.ThrowIfNull(configure);
        return AddRedisStreams(signalrBuilder, o =>
        {
            o.Configuration = ConfigurationOptions.Parse(redisConnectionString);
            configure(o);
        });
    }

    /// <summary>Uses the Redis Streams backplane configured by <paramref name="configure"/>.</summary>
    public static ISignalRServerBuilder AddRedisStreams(this ISignalRServerBuilder signalrBuilder, Action<RedisStreamsOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(signalrBuilder);
        ArgumentNullException.ThrowIfNull(configure);
        var services = signalrBuilder.Services;
        var firstCall = !services.Any(d => d.ServiceType == typeof(BackplaneNode));
        services.AddOptions<RedisStreamsOptions>().Configure(configure).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RedisStreamsOptions>, RedisStreamsOptionsValidator>());
        services.TryAddSingleton<BackplaneNode>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, NodeHostedService>());
        services.AddSingleton(typeof(HubLifetimeManager<>), typeof(RedisStreamsHubLifetimeManager<>));
        if (firstCall)
        {
            // Health check names must be unique: register it once, however often AddRedisStreams is called.
            services.AddHealthChecks().AddCheck<NodeHealthCheck>("signalr-redis-streams", tags: ["ready"]);
        }
        return signalrBuilder;
    }
}
