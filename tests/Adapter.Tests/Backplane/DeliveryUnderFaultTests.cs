using Microsoft.AspNetCore.SignalR;
using SignalR.RedisStreams.Tests.Infrastructure;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>
/// Two nodes send numbered messages to all clients at a steady rate while redis-server suffers a real fault; every
/// client must then hold every message that was sent without an exception exactly once, in per-sender order.
/// Each test has a redis-server of its own, since the faults take it down.
/// </summary>
public sealed class DeliveryUnderFaultTests(ITestOutputHelper output)
{
    private const int MessagesPerSender = 400;
    private const int FaultAfter = 100;
    private static readonly TimeSpan SendInterval = TimeSpan.FromMilliseconds(10);

    [Fact]
    public async Task Nothing_is_lost_when_redis_restarts_with_its_data()
        => await RunAsync(persistent: true, "restart with AOF", async redis =>
        {
            await redis.StopAsync();
            await redis.RestartAsync();
        });

    [Fact]
    public async Task Nothing_is_lost_when_redis_is_killed_and_restarts_empty()
        => await RunAsync(persistent: false, "kill, restart empty", async redis =>
        {
            await redis.KillAsync();
            await redis.RestartAsync();
        });

    [Fact]
    public async Task Nothing_is_lost_when_redis_is_paused_for_seconds()
        => await RunAsync(persistent: false, "SIGSTOP 3 s", async redis =>
        {
            redis.Pause();
            // The fault itself is a 3 s freeze; this wait is its length, not a synchronisation.
            await Task.Delay(TimeSpan.FromSeconds(3));
            redis.Resume();
        });

    [Fact]
    public async Task Nothing_is_lost_when_every_client_connection_is_killed()
        => await RunAsync(persistent: false, "CLIENT KILL", async redis =>
        {
            await redis.ExecuteAsync("CLIENT", "KILL", "TYPE", "normal");
        });

    [Fact]
    public async Task A_send_that_cannot_reach_redis_in_time_fails_and_is_never_delivered()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var cluster = await TestCluster.StartAsync(redis, 2, HubProtocolKind.Json, output,
            o => o.PublishTimeout = TimeSpan.FromSeconds(1));
        await using var client = await cluster.ConnectAsync(1);
        using var retries = new CounterTotal("signalr.redis_streams.publish_retries");
        await redis.KillAsync();

        // The first send is handed to Redis and retried; only then is the second sent, so it waits in the outbox.
        var first = cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "in flight");
        await Eventually.TrueAsync(() => retries.Total > 0, "the first send is being retried", TimeSpan.FromSeconds(20));
        var started = DateTime.UtcNow;
        var second = cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "too late");
        var ex = await Assert.ThrowsAsync<RedisStreamsPublishException>(() => Eventually.WithinAsync(second, "the send fails", TimeSpan.FromSeconds(20)));
        Assert.Contains("PublishTimeout", ex.Message, StringComparison.Ordinal);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(15), "failed after about PublishTimeout, not much later");

        await redis.RestartAsync();
        await Eventually.WithinAsync(first.ContinueWith(_ => { }, TaskScheduler.Default), "the in-flight send settles", TimeSpan.FromSeconds(30));
        await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "after");
        await client.WaitForTextAsync("after", TimeSpan.FromSeconds(30));
        Assert.DoesNotContain("too late", client.Texts);
        if (first.IsCompletedSuccessfully)
        {
            Assert.Contains("in flight", client.Texts);
        }
    }

    private async Task RunAsync(bool persistent, string fault, Func<RedisServer, Task> inject)
    {
        await using var redis = await RedisServer.StartAsync(persistent);
        await using var cluster = await TestCluster.StartAsync(redis, 2, HubProtocolKind.MessagePack, output);
        var clients = new[] { await cluster.ConnectAsync(0), await cluster.ConnectAsync(1), await cluster.ConnectAsync(1) };

        var senders = Enumerable.Range(0, 2).Select(i => new Sender(cluster.Hub(i), "n" + i)).ToArray();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var sending = senders.Select(s => s.RunAsync(MessagesPerSender, SendInterval, stop.Token)).ToArray();

        await Eventually.TrueAsync(() => senders.All(s => s.Issued >= FaultAfter), "senders under way");
        await inject(redis);
        await Task.WhenAll(sending);

        var report = await DeliveryReport.SettleAsync(senders, clients, TimeSpan.FromSeconds(45));
        output.WriteLine($"{fault}: {report}");
        Assert.True(report.Sent > MessagesPerSender, $"most sends succeeded ({report})");
        Assert.Equal(0, report.Lost);
        Assert.Equal(0, report.Duplicates);
        Assert.Equal(0, report.Reordered);
        Assert.Equal(0, report.Unexpected);
    }

    /// <summary>Sends "{name}-{k}" for k = 1..count to all, one every interval, without waiting for each to be confirmed
    /// (so several are in the outbox during a fault), and records which sends succeeded.</summary>
    internal sealed class Sender(IHubContext<TestHub> hub, string name)
    {
        private readonly List<Task> _sends = [];
        private int _issued;

        public string Name { get; } = name;

        public int Issued => Volatile.Read(ref _issued);

        public HashSet<int> Succeeded { get; } = [];

        public int Failed { get; private set; }

        public async Task RunAsync(int count, TimeSpan interval, CancellationToken cancellationToken)
        {
            using var timer = new PeriodicTimer(interval);
            for (var k = 1; k <= count && !cancellationToken.IsCancellationRequested; k++)
            {
                var number = k;
                _sends.Add(Track(number, hub.Clients.All.SendAsync(TestClient.SendMethod, $"{Name}-{number}", CancellationToken.None)));
                Interlocked.Increment(ref _issued);
                await timer.WaitForNextTickAsync(cancellationToken);
            }
            await Task.WhenAll(_sends);
        }

        private async Task Track(int number, Task send)
        {
            try
            {
                await send;
                lock (Succeeded)
                {
                    Succeeded.Add(number);
                }
            }
            catch (RedisStreamsPublishException)
            {
                lock (Succeeded)
                {
                    Failed++;
                }
            }
        }
    }

    internal sealed record DeliveryReport(int Sent, int Failed, int Received, int Lost, int Duplicates, int Reordered, int Unexpected)
    {
        /// <summary>Waits until every client has every successfully sent message (or the deadline passes), then counts.</summary>
        public static async Task<DeliveryReport> SettleAsync(IReadOnlyList<Sender> senders, IReadOnlyList<TestClient> clients, TimeSpan deadline)
        {
            var expected = senders.Sum(s => s.Succeeded.Count);
            try
            {
                await Eventually.TrueAsync(() => clients.All(c => c.Texts.Distinct().Count(t => IsFrom(senders, t)) >= expected),
                    "every client has every sent message", deadline);
            }
            catch (TimeoutException)
            {
                // counted below as lost
            }

            int received = 0, lost = 0, duplicates = 0, reordered = 0, unexpected = 0;
            foreach (var client in clients)
            {
                var texts = client.Texts;
                received += texts.Count;
                duplicates += texts.Count - texts.Distinct().Count();
                foreach (var sender in senders)
                {
                    var numbers = texts.Where(t => t.StartsWith(sender.Name + "-", StringComparison.Ordinal))
                        .Select(t => int.Parse(t[(sender.Name.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToList();
                    lost += sender.Succeeded.Count(n => !numbers.Contains(n));
                    unexpected += numbers.Count(n => !sender.Succeeded.Contains(n));
                    for (var i = 1; i < numbers.Count; i++)
                    {
                        if (numbers[i] < numbers[i - 1])
                        {
                            reordered++;
                        }
                    }
                }
            }
            return new DeliveryReport(expected, senders.Sum(s => s.Failed), received, lost, duplicates, reordered, unexpected);
        }

        private static bool IsFrom(IReadOnlyList<Sender> senders, string text) => senders.Any(s => text.StartsWith(s.Name + "-", StringComparison.Ordinal));

        public override string ToString()
            => $"sent {Sent}, failed to send {Failed}, received {Received}, lost {Lost}, duplicates {Duplicates}, reordered {Reordered}, unexpected {Unexpected}";
    }
}
