using AppHost.Tests.Infrastructure;
using Xunit.Abstractions;

namespace AppHost.Tests.Chaos;

/// <summary>The app with a Redis that keeps nothing across a restart (<c>Redis:Persistence=none</c>).</summary>
public sealed class EmptyRedisAppFixture : ChatAppFixture
{
    protected override IEnumerable<string> AppHostArgs() =>
        [.. base.AppHostArgs().Where(a => !a.StartsWith("Redis:Persistence=", StringComparison.Ordinal)), "Redis:Persistence=none"];
}

/// <summary>
/// Redis killed and restarted empty, twice, under traffic: nodes notice (epoch), republish their replay window, and
/// receivers drop what they already had.
/// </summary>
public sealed class EmptyRedisChaosTests(EmptyRedisAppFixture app, ITestOutputHelper output) : IClassFixture<EmptyRedisAppFixture>
{
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task Redis_killed_and_restarted_empty_loses_nothing()
    {
        const int messagesPerSender = 120;
        using var timeout = new CancellationTokenSource(Deadline);
        var ct = timeout.Token;
        using var logs = new ResourceLogCapture(app.App, app.NodeNames);
        await using var traffic = await ChaosTraffic.StartAsync(app.BalancerUrl, app.NodeNames, "empty", ct);
        var total = traffic.Senders.Count * messagesPerSender;

        var sending = traffic.SendAsync(messagesPerSender, TimeSpan.FromMilliseconds(50), ct);
        foreach (var at in new[] { total / 5, total * 3 / 5 })
        {
            await Eventually.TrueAsync(() => Task.FromResult(traffic.Issued >= at), Deadline, "traffic under way");
            await AppFaults.KillAsync(app.App, AppFaults.Redis, ct);
            await AppFaults.StartAsync(app.App, AppFaults.Redis, ct);
            // Rooms live in the nodes, not in Redis; the registry of connections is written again by the nodes.
        }
        await sending;

        var report = await traffic.SettleAsync(TimeSpan.FromSeconds(60));
        ChaosLog.Write(output, "redis SIGKILL, restarted empty x2", report);
        if (report.Lost > 0)
        {
            ChaosLog.WriteNodeLogs("redis-killed-empty", logs.Lines);
        }
        Assert.True(report.Sent > 0, report.ToString());
        Assert.Equal(0, report.Lost);
        Assert.Equal(0, report.Duplicates);
        Assert.Equal(0, report.Reordered);
    }
}
