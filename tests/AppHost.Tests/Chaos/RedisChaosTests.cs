using AppHost.Tests.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using Xunit.Abstractions;

namespace AppHost.Tests.Chaos;

/// <summary>
/// Faults on the real app with Redis persisting every write (AOF, fsync always): clients on every node send to all,
/// a room and a user while Redis is stopped and restarted, frozen, or has every connection killed, twice each; and a
/// chat node is killed. Every live client must hold every sent message exactly once, in per-sender order.
/// </summary>
[Collection(AppHost.Tests.Identity.SignedInApp.Name)]
public sealed class RedisChaosTests(ChatAppFixture app, ITestOutputHelper output)
{
    private const int MessagesPerSender = 120;
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);

    [Fact]
    public Task Redis_stopped_and_restarted_with_its_data_loses_nothing()
        => RunAsync("redis stop/start (AOF)", ct => AppFaults.StopAndStartAsync(app.App, AppFaults.Redis, ct));

    [Fact]
    public Task Redis_frozen_for_seconds_loses_nothing()
        => RunAsync("redis SIGSTOP 2 s", ct => AppFaults.PauseAsync(app.App, AppFaults.Redis, TimeSpan.FromSeconds(2), ct));

    [Fact]
    public Task Every_redis_connection_killed_loses_nothing()
        => RunAsync("CLIENT KILL TYPE normal", async ct => Assert.True(await AppFaults.KillRedisClientsAsync(app.App, ct) > 0));

    [Fact]
    public async Task Killed_chat_nodes_are_dropped_their_pending_client_results_fail_and_the_rest_loses_nothing()
    {
        using var timeout = new CancellationTokenSource(Deadline);
        var ct = timeout.Token;
        string[] victims = [app.NodeNames[^1], app.NodeNames[^2]];
        await using var traffic = await ChaosTraffic.StartAsync(app.BalancerUrl, app.NodeNames, "nodekill", ct);

        // A client on the first victim that never answers a status request, asked by a client on a surviving node.
        await using var silent = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, victims[0], "silent", ct);
        var neverAnswered = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        silent.On("status", () => neverAnswered.Task);
        await using var asker = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[0], "asker", ct);
        var statusRequest = asker.InvokeAsync<string>("AskStatus", silent.ConnectionId, ct);

        var total = traffic.Senders.Count * MessagesPerSender;
        var sending = traffic.SendAsync(MessagesPerSender, Interval, ct);
        // Two nodes killed, one after the other, while everyone sends.
        await Eventually.TrueAsync(() => Task.FromResult(traffic.Issued >= total / 4), Deadline, "traffic under way");
        var killedAt = DateTime.UtcNow;
        await AppFaults.KillAsync(app.App, victims[0], ct);

        var failure = await Assert.ThrowsAsync<HubException>(() => Eventually.WithinAsync(statusRequest, TimeSpan.FromSeconds(40), "the status request fails"));
        Assert.Contains("Connection disconnected.", failure.Message, StringComparison.Ordinal);
        output.WriteLine($"pending client result failed {(DateTime.UtcNow - killedAt).TotalSeconds:F1} s after the kill");

        await Eventually.TrueAsync(() => Task.FromResult(traffic.Issued >= total * 2 / 3), Deadline, "traffic goes on");
        await AppFaults.KillAsync(app.App, victims[1], ct);
        await sending;

        var report = await traffic.SettleAsync(TimeSpan.FromSeconds(60), deadNodes: victims);
        ChaosLog.Write(output, $"chat nodes {victims[0]} then {victims[1]} killed", report);
        Assert.True(report.Sent > 0, report.ToString());
        Assert.Equal(0, report.Lost);
        Assert.Equal(0, report.Duplicates);
        Assert.Equal(0, report.Reordered);

        foreach (var victim in victims)
        {
            await AppFaults.StartAsync(app.App, victim, ct); // leave the app whole for the other tests of the class
        }
    }

    private async Task RunAsync(string fault, Func<CancellationToken, Task> inject)
    {
        using var timeout = new CancellationTokenSource(Deadline);
        var ct = timeout.Token;
        using var logs = new ResourceLogCapture(app.App, app.NodeNames);
        await using var traffic = await ChaosTraffic.StartAsync(app.BalancerUrl, app.NodeNames, Guid.NewGuid().ToString("N")[..8], ct);
        var total = traffic.Senders.Count * MessagesPerSender;

        var sending = traffic.SendAsync(MessagesPerSender, Interval, ct);
        // The same fault twice: once early, once late in the run.
        await Eventually.TrueAsync(() => Task.FromResult(traffic.Issued >= total / 5), Deadline, "traffic under way");
        await inject(ct);
        await app.WaitUntilHealthyAsync([AppFaults.Redis, .. app.NodeNames], ct);
        await Eventually.TrueAsync(() => Task.FromResult(traffic.Issued >= total * 3 / 5), Deadline, "traffic goes on");
        await inject(ct);
        await sending;

        var report = await traffic.SettleAsync(TimeSpan.FromSeconds(60));
        ChaosLog.Write(output, fault + " x2", report);
        if (report.Lost + report.Duplicates + report.Reordered > 0)
        {
            ChaosLog.WriteNodeLogs(fault.Split(' ')[0] + "-" + fault.Split(' ')[1], logs.Lines);
        }
        Assert.Equal(total, report.Sent + report.FailedToSend);
        Assert.True(report.Sent > 0, report.ToString());
        Assert.Equal(0, report.Lost);
        Assert.Equal(0, report.Duplicates);
        Assert.Equal(0, report.Reordered);
        Assert.Equal(0, report.Unconfirmed);
    }
}
