using System.Net;
using System.Net.Sockets;

namespace AppHost.Redis;

/// <summary>
/// Loopback ports for a local Redis Cluster. Each node also listens on its cluster bus port (its port + 10000), so both
/// must be free, and the port is taken from 20000–29999: below the ephemeral range, with the bus port still a valid
/// port. Shared by the AppHost's cluster and the tests' one (linked into tests/RedisTestServer).
/// </summary>
internal static class ClusterPorts
{
    /// <summary><paramref name="count"/> ports whose bus ports are free too, starting at a random one; null when there
    /// are not that many within 2,000 tries.</summary>
    public static List<int>? TryFind(int count)
    {
        var ports = new List<int>();
        var next = 20000 + Random.Shared.Next(0, 9000);
        for (var tried = 0; ports.Count < count && tried < 2000; tried++, next = next >= 29999 ? 20000 : next + 1)
        {
            if (IsFree(next) && IsFree(next + 10000))
            {
                ports.Add(next);
            }
        }

        return ports.Count == count ? ports : null;
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
