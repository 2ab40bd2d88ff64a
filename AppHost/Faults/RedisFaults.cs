using System.Diagnostics;
using System.Globalization;
using AppHost.Redis;

namespace AppHost.Faults;

/// <summary>The faults of the Redis commands (<see cref="FaultCommands"/>), on the local redis-server process. Each returns
/// the outcome the dashboard shows.</summary>
internal static class RedisFaults
{
    public static async Task<string> FreezeAsync(FaultContext fault, RedisServerResource redis)
    {
        var pid = fault.RunningProcessId();
        var started = Stopwatch.GetTimestamp();
        UnixSignal.Send(pid, UnixSignal.Stop);
        var canceled = false;
        try
        {
            // The length of the freeze is the fault itself.
            await Task.Delay(FaultCommands.FreezeDuration, fault.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            canceled = true; // thawed early: the dialog's Cancel
        }
        finally
        {
            UnixSignal.Send(pid, UnixSignal.Continue);
        }

        var frozen = Stopwatch.GetElapsedTime(started).TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture);
        return $"redis-server (pid {pid}) was frozen for {frozen} s{(canceled ? " (canceled early)" : "")}: SIGSTOP, then SIGCONT. " +
            $"Sends made meanwhile waited in the nodes' outboxes; {await KeyCountAsync(fault, redis)} keys in Redis now.";
    }

    public static async Task<string> KillClientsAsync(FaultContext fault, RedisServerResource redis)
    {
        await using var client = await RedisCommandClient.ConnectAsync(redis, fault.CancellationToken);
        var normal = await client.ExecuteAsync(fault.CancellationToken, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
        var pubsub = await client.ExecuteAsync(fault.CancellationToken, "CLIENT", "KILL", "TYPE", "pubsub", "SKIPME", "yes");
        return $"Killed {normal} normal and {pubsub} pub/sub client connections to Redis (CLIENT KILL); the clients reconnect by themselves.";
    }

    public static async Task<string> RestartKeepingDataAsync(FaultContext fault, RedisServerResource redis)
    {
        var pid = fault.RunningProcessId();
        string? keysBefore;
        await using (var client = await RedisCommandClient.ConnectAsync(redis, fault.CancellationToken))
        {
            keysBefore = await client.ExecuteAsync(fault.CancellationToken, "DBSIZE");
            // Saves an RDB snapshot (and flushes the append-only file, where there is one), then exits: the restart loads it,
            // with or without persistence configured. On success Redis closes the connection without a reply.
            var reply = await client.ExecuteAsync(fault.CancellationToken, "SHUTDOWN", "SAVE");
            if (reply is not null)
            {
                throw new RedisCommandException("SHUTDOWN SAVE answered: " + reply);
            }
        }

        await fault.WaitUntilEndedAsync();
        await StayDownAsync(fault);
        var newPid = await fault.StartAndWaitHealthyAsync();
        return $"redis-server (pid {pid}) shut down with SHUTDOWN SAVE ({keysBefore} keys), stayed down {Seconds(FaultCommands.RestartDownTime)} s " +
            $"and started again (pid {newPid}) with its data: {await KeyCountAsync(fault, redis)} keys.";
    }

    public static async Task<string> RestartEmptyAsync(FaultContext fault, RedisServerResource redis)
    {
        var pid = fault.RunningProcessId();
        var keysBefore = await KeyCountAsync(fault, redis);
        UnixSignal.Send(pid, UnixSignal.Kill);
        await fault.WaitUntilEndedAsync();

        // The data directory is this AppHost run's own (--dir): an RDB snapshot, the append-only files.
        var deleted = 0;
        foreach (var entry in new DirectoryInfo(redis.WorkingDirectory).EnumerateFileSystemInfos())
        {
            if (entry is DirectoryInfo directory)
            {
                directory.Delete(recursive: true);
            }
            else
            {
                entry.Delete();
            }

            deleted++;
        }

        await StayDownAsync(fault);
        var newPid = await fault.StartAndWaitHealthyAsync();
        return $"redis-server (pid {pid}) killed with SIGKILL, its {deleted} data files deleted ({keysBefore} keys gone), " +
            $"down {Seconds(FaultCommands.RestartDownTime)} s, and started empty (pid {newPid}). The nodes notice the new epoch and " +
            "republish what they published in their replay window.";
    }

    /// <summary>Keeps Redis down for <see cref="FaultCommands.RestartDownTime"/>: the length of the outage is the fault itself.</summary>
    private static Task StayDownAsync(FaultContext fault) => Task.Delay(FaultCommands.RestartDownTime, fault.CancellationToken);

    private static string Seconds(TimeSpan time) => time.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture);

    /// <summary><c>DBSIZE</c>, or "?" when Redis does not answer.</summary>
    private static async Task<string> KeyCountAsync(FaultContext fault, RedisServerResource redis)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(fault.CancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            await using var client = await RedisCommandClient.ConnectAsync(redis, timeout.Token);
            return await client.ExecuteAsync(timeout.Token, "DBSIZE") ?? "?";
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or OperationCanceledException or RedisCommandException)
        {
            return "?";
        }
    }
}
