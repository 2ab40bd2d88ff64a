using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.SignalR;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>At low traffic a node reads each entry with one XREAD: the blocking read that the entry wakes, without a
/// second read that would look for more and find nothing. Counted by Redis itself (<c>INFO commandstats</c>).</summary>
public sealed partial class QuietReadsTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private const int Messages = 40;

    [Fact]
    public async Task At_low_traffic_each_entry_costs_each_node_one_read()
    {
        await using var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output);
        await using var receiver = await cluster.ConnectAsync(1);
        var hub = cluster.Hub(0);
        await hub.Clients.All.SendAsync(TestClient.SendMethod, "warm-up");
        await receiver.WaitForTextAsync("warm-up");

        // 40 messages at 50 a second (a timer paces the load; nothing waits on it for a result).
        var before = await XreadCallsAsync();
        using (var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(20)))
        {
            for (var i = 1; i <= Messages; i++)
            {
                await pace.WaitForNextTickAsync();
                await hub.Clients.All.SendAsync(TestClient.SendMethod, $"m{i}");
            }
        }
        await receiver.WaitForTextAsync($"m{Messages}");
        var reads = await XreadCallsAsync() - before;

        // Two nodes read each message: with a second read per entry it would be about 4 reads per message (plus the
        // heartbeats' and the waits that time out); one read per entry gives about 2.
        output.WriteLine($"{reads} XREAD calls for {Messages} messages on 2 nodes");
        Assert.Equal(["warm-up", .. Enumerable.Range(1, Messages).Select(i => $"m{i}")], receiver.Texts);
        Assert.InRange(reads, 2 * Messages, 3 * Messages);
    }

    private async Task<long> XreadCallsAsync()
    {
        var stats = await redis.Server.RawCommandAsync("INFO", "commandstats");
        var match = XreadCalls().Match(stats);
        return match.Success ? long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
    }

    [GeneratedRegex(@"cmdstat_xread:calls=(\d+)")]
    private static partial Regex XreadCalls();
}
