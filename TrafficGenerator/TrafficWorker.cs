using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace TrafficGenerator;

/// <summary>
/// Connects the simulated users (each on another node while there are enough nodes, reconnecting through the balancer
/// when its node goes away), sends <c>traffic #N</c> to the room at <see cref="TrafficOptions.Rate"/> from the users in
/// turn, judges deliveries every second and logs the counts every <see cref="TrafficOptions.ReportInterval"/>.
/// </summary>
internal sealed class TrafficWorker(IOptions<TrafficOptions> options, DeliveryLedger ledger, UserPool users, ILogger<TrafficWorker> logger)
    : BackgroundService
{
    private static readonly TimeSpan MaxReconnectDelay = TimeSpan.FromSeconds(10);

    private readonly TrafficOptions _options = options.Value;

    // Users connect one at a time, so that each sees the nodes the others are pinned to: connecting together at the
    // start, two of them could both find no one pinned yet and land on the same node, leaving another node without a
    // user (seen on a loaded machine).
    private readonly SemaphoreSlim _connecting = new(1, 1);

    public override void Dispose()
    {
        _connecting.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        TrafficLog.Started(logger, _options.Rate, _options.Room, users.All.Count, _options.BalancerUrl!);
        try
        {
            await Task.WhenAll([
                .. users.All.Select(user => SuperviseAsync(user, stoppingToken)),
                SendAsync(stoppingToken),
                JudgeAsync(stoppingToken),
            ]);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            Report();
        }
    }

    /// <summary>Keeps <paramref name="user"/> connected: connects, waits for the connection to close, connects again,
    /// with a growing pause (1 s to 10 s) after failed attempts.</summary>
    private async Task SuperviseAsync(SimulatedUser user, CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromSeconds(1);
        for (var attempt = 1; !stoppingToken.IsCancellationRequested; attempt++)
        {
            Task<string> closed;
            try
            {
                await _connecting.WaitAsync(stoppingToken);
                try
                {
                    closed = await user.ConnectAsync(users.NodesOfOthers(user), stoppingToken);
                }
                finally
                {
                    _connecting.Release();
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                TrafficLog.ConnectFailed(logger, user.Name, attempt, ex.Message);
                // A pause between attempts (the balancer may still send a new connection to a dead node).
                await Task.Delay(delay, stoppingToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxReconnectDelay.Ticks));
                continue;
            }

            var node = user.Node ?? "?";
            TrafficLog.Connected(logger, user.Name, node);
            attempt = 0;
            delay = TimeSpan.FromSeconds(1);
            var reason = await closed.WaitAsync(stoppingToken);
            TrafficLog.Disconnected(logger, user.Name, node, reason);
        }
    }

    /// <summary>Sends one message per tick from the next connected user, without waiting for the previous one.</summary>
    private async Task SendAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1 / _options.Rate));
        long sequence = 0;
        var turn = 0;
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            var sender = users.NextConnected(ref turn);
            if (sender?.Connection is not { } connection)
            {
                continue; // nobody is connected right now
            }

            var current = ++sequence;
            ledger.Issued(current, DateTimeOffset.UtcNow);
            _ = TrackAsync(sender.Name, connection.InvokeAsync("SendToRoom", _options.Room, TrafficMessage.TextOf(current), stoppingToken), current);
        }
    }

    private async Task TrackAsync(string user, Task send, long sequence)
    {
        try
        {
            await send;
            ledger.Confirmed(sequence, DateTimeOffset.UtcNow);
        }
#pragma warning disable CA1031 // any failure of a send makes it a failed send, counted and logged
        catch (Exception ex)
#pragma warning restore CA1031
        {
            ledger.Failed(sequence);
            TrafficLog.SendFailed(logger, sequence, user, ex.Message);
        }
    }

    private async Task JudgeAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        var nextReport = DateTimeOffset.UtcNow + _options.ReportInterval;
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            var now = DateTimeOffset.UtcNow;
            foreach (var lost in ledger.Judge(now))
            {
                TrafficLog.Lost(logger, lost.Sequence, lost.IssuedAt, string.Join(", ", lost.MissingAt), ledger.Deadline);
            }

            if (now >= nextReport)
            {
                Report();
                nextReport = now + _options.ReportInterval;
            }
        }
    }

    private void Report()
    {
        var totals = ledger.Totals;
        var where = string.Join(", ", users.All.Select(u => u.Name + "@" + (u.Node ?? "(reconnecting)")));
        TrafficLog.Totals(logger, totals.Sent, totals.Delivered, totals.Lost, totals.Pending, totals.FailedToSend, totals.Duplicates, totals.Unchecked, where);
    }
}

/// <summary>The simulated users <c>traffic-1..N</c>.</summary>
internal sealed class UserPool(IOptions<TrafficOptions> options, DeliveryLedger ledger) : IAsyncDisposable
{
    public IReadOnlyList<SimulatedUser> All { get; } = [.. Enumerable.Range(1, options.Value.Users)
        .Select(i => new SimulatedUser("traffic-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture), options.Value, ledger))];

    public int ConnectedCount => All.Count(u => u.IsConnected);

    /// <summary>The nodes the other users are connected to.</summary>
    public IReadOnlyCollection<string> NodesOfOthers(SimulatedUser user)
        => [.. All.Where(u => u != user).Select(u => u.Node).OfType<string>()];

    /// <summary>The next connected user after <paramref name="turn"/> (round robin), or null when none is.</summary>
    public SimulatedUser? NextConnected(ref int turn)
    {
        for (var i = 0; i < All.Count; i++)
        {
            var user = All[turn++ % All.Count];
            if (user.IsConnected)
            {
                return user;
            }
        }

        return null;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var user in All)
        {
            await user.DisposeAsync();
        }
    }
}
