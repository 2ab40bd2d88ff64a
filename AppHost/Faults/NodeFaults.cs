namespace AppHost.Faults;

/// <summary>The fault of the chat nodes' <see cref="FaultCommands.KillNode"/> command.</summary>
internal static class NodeFaults
{
    public static async Task<string> KillAsync(FaultContext fault, string node)
    {
        var pid = ResourceProcess.ApplicationProcessId(fault.RunningProcessId());
        UnixSignal.Send(pid, UnixSignal.Kill);
        await fault.WaitUntilEndedAsync();
        return $"{node}: its process (pid {pid}) was killed with SIGKILL, without a goodbye. The other nodes drop it after " +
            "their heartbeat timeout (10 s by default); its clients reconnect through the balancer. Start brings it back.";
    }
}
