using System.Net;
using System.Net.Sockets;

namespace AppHost.Redis;

/// <summary>
/// Loopback ports for a local Redis Cluster. Each node also listens on its cluster bus port (its port + 10000), so both
/// must be free, and both must lie below the kernel's ephemeral range (Linux: 32768 and up), where an outgoing
/// connection could take one between this check and redis-server's bind (a node then exits with "Address already in
/// use"). So the port is taken from 20000 up to 10001 below the start of that range (20000–22767 by default).
/// Shared by the AppHost's cluster and the tests' one (linked into tests/RedisTestServer).
/// </summary>
internal static class ClusterPorts
{
    private const int Lowest = 20000;
    private const int BusOffset = 10000;

    /// <summary>The highest port whose bus port is still below the ephemeral range.</summary>
    private static readonly int Highest = HighestBelowEphemeral();

    /// <summary><paramref name="count"/> ports whose bus ports are free too, starting at a random one; null when there
    /// are not that many within 2,000 tries.</summary>
    public static List<int>? TryFind(int count)
    {
        var ports = new List<int>();
        var next = Lowest + Random.Shared.Next(0, Highest - Lowest + 1);
        for (var tried = 0; ports.Count < count && tried < 2000; tried++, next = next >= Highest ? Lowest : next + 1)
        {
            if (IsFree(next) && IsFree(next + BusOffset))
            {
                ports.Add(next);
            }
        }

        return ports.Count == count ? ports : null;
    }

    private static int HighestBelowEphemeral()
    {
        // "32768\t60999" on Linux; elsewhere (or unreadable) the Linux default.
        var ephemeralLow = 32768;
        try
        {
            var range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (range.Length > 0 && int.TryParse(range[0], System.Globalization.CultureInfo.InvariantCulture, out var low))
            {
                ephemeralLow = low;
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Not Linux: keep the default.
        }

        // Never fewer than 1,000 candidates, even with an unusually low ephemeral range (then the old risk is back).
        return Math.Max(Lowest + 999, Math.Min(29999, ephemeralLow - BusOffset - 1));
    }

    private static bool IsFree(int port)
    {
        try
        {
            var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            listener.Stop();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
