using System.ComponentModel;
using System.Runtime.InteropServices;

namespace AppHost.Faults;

/// <summary>Sends POSIX signals to a process (Linux numbering): freeze a Redis with SIGSTOP, thaw it with SIGCONT,
/// kill a process without a goodbye with SIGKILL.</summary>
public static partial class UnixSignal
{
    /// <summary>SIGKILL: the process dies at once, without cleanup.</summary>
    public const int Kill = 9;

    /// <summary>SIGCONT: resumes a stopped process.</summary>
    public const int Continue = 18;

    /// <summary>SIGSTOP: freezes the process (its sockets stay open, nothing answers).</summary>
    public const int Stop = 19;

    /// <summary>Sends <paramref name="signal"/> to <paramref name="pid"/>.</summary>
    public static void Send(int pid, int signal)
    {
        if (SendSignal(pid, signal) != 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), $"kill({pid}, {signal}) failed");
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SendSignal(int pid, int signal);
}
