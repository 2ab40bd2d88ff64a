using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.Logging;

namespace SignalR.RedisStreams;

/// <summary>TEMPORARY placeholder while the real manager is written: behaves like the default (single-node) manager.</summary>
public sealed class RedisStreamsHubLifetimeManager<THub> : DefaultHubLifetimeManager<THub> where THub : Hub
{
    /// <summary>Creates the manager.</summary>
    public RedisStreamsHubLifetimeManager(ILogger<DefaultHubLifetimeManager<THub>> logger) : base(logger) { }
}
