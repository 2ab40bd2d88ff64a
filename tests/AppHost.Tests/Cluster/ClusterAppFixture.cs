using System.Text.RegularExpressions;
using AppHost.Redis;
using AppHost.Tests.Chaos;
using AppHost.Tests.Infrastructure;

namespace AppHost.Tests.Cluster;

/// <summary>The app with <c>Redis:Topology=cluster</c>: six redis-server processes (3 masters, 3 replicas) joined by
/// <c>redis-cli --cluster create</c>, the chat nodes on it through the same <c>AddRedisClient</c> +
/// <c>AddRedisStreams</c> wiring, with three streams. Started once for the classes of the <see cref="ClusterApp"/>
/// collection (the delivery test and the failovers); the console output of the chat nodes is captured from the start,
/// for the stream each node sends on and for the gaps they report.</summary>
public sealed partial class ClusterAppFixture : ChatAppFixture, IDisposable
{
    private ResourceLogCapture? _nodeLogs;

    /// <summary>The chat nodes' console output since the app started.</summary>
    internal ResourceLogCapture NodeLogs => _nodeLogs ?? throw new InvalidOperationException("The app is not started.");

    /// <summary>The redis-N resources the failover tests have faulted as a master so far (each test picks another if it can).</summary>
    internal HashSet<string> FaultedMasters { get; } = new(StringComparer.Ordinal);

    /// <summary>The slots whose master the failover tests have faulted so far.</summary>
    internal HashSet<int> FaultedSlots { get; } = [];

    protected override IEnumerable<string> AppHostArgs() => [.. base.AppHostArgs(), $"{RedisClusterHosting.TopologyKey}=cluster"];

    protected override IEnumerable<string> ResourcesToWaitFor() =>
        [.. RedisNodeNames, .. NodeNames, AppHostSettings.LoadBalancerResourceName];

    /// <summary>The redis-server resources of the cluster: redis-1..redis-6.</summary>
    public static IReadOnlyList<string> RedisNodeNames => [.. Enumerable.Range(1, RedisClusterHosting.NodeCount).Select(RedisClusterHosting.NodeResourceName)];

    protected override void OnStarted() => _nodeLogs = new ResourceLogCapture(App, NodeNames);

    /// <summary>The stream each chat node sends on (the key in its start-up line), by node resource.</summary>
    internal async Task<IReadOnlyDictionary<string, string>> SendStreamsAsync(TimeSpan timeout)
    {
        var streams = new Dictionary<string, string>(StringComparer.Ordinal);
        await Eventually.TrueAsync(() =>
        {
            foreach (var line in NodeLogs.Lines)
            {
                if (StartLine().Match(line) is { Success: true } start)
                {
                    streams[start.Groups["resource"].Value] = start.Groups["stream"].Value;
                }
            }
            return Task.FromResult(NodeNames.All(streams.ContainsKey));
        }, timeout, "the start-up line of every chat node, naming the stream it sends on");
        return streams;
    }

    public void Dispose() => _nodeLogs?.Dispose();

    [GeneratedRegex(@"^(?<resource>chatnode-\d+): .*Redis Streams backplane node \w+ starting on stream '[^']*'; it sends on '(?<stream>[^']+)'")]
    private static partial Regex StartLine();
}

/// <summary>The classes that share one <see cref="ClusterAppFixture"/>: starting the cluster app is the expensive part.</summary>
[CollectionDefinition(Name)]
public sealed class ClusterApp : ICollectionFixture<ClusterAppFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "cluster app";
}
