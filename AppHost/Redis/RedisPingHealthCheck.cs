using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace AppHost.Redis;

/// <summary>
/// Healthy when the Redis behind <see cref="RedisServerResource.PrimaryEndpoint"/> answers <c>AUTH</c> + <c>PING</c>
/// with <c>+OK</c> / <c>+PONG</c>. Speaks RESP over a fresh TCP connection, so it never reports a cached state.
/// </summary>
internal sealed class RedisPingHealthCheck(RedisServerResource resource) : IHealthCheck
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (!resource.PrimaryEndpoint.IsAllocated)
        {
            return HealthCheckResult.Unhealthy("The Redis endpoint is not allocated yet.");
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Timeout);
        try
        {
            var password = await resource.PasswordParameter.GetValueAsync(timeout.Token) ?? "";
            using var client = new TcpClient();
            await client.ConnectAsync(resource.PrimaryEndpoint.Host, resource.PrimaryEndpoint.Port, timeout.Token);
            var stream = client.GetStream();
            await stream.WriteAsync(Command("AUTH", password), timeout.Token);
            await stream.WriteAsync(Command("PING"), timeout.Token);

            var replies = await ReadLinesAsync(stream, count: 2, timeout.Token);
            return replies is ["+OK", "+PONG"]
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy("Redis answered: " + string.Join(" | ", replies));
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException)
        {
            return HealthCheckResult.Unhealthy("Redis does not answer PING.", ex);
        }
    }

    private static byte[] Command(params string[] parts)
    {
        var text = new StringBuilder().Append('*').Append(parts.Length).Append("\r\n");
        foreach (var part in parts)
        {
            text.Append('$').Append(Encoding.UTF8.GetByteCount(part)).Append("\r\n").Append(part).Append("\r\n");
        }

        return Encoding.UTF8.GetBytes(text.ToString());
    }

    private static async Task<List<string>> ReadLinesAsync(NetworkStream stream, int count, CancellationToken cancellationToken)
    {
        var lines = new List<string>(count);
        var buffer = new byte[512];
        var pending = new StringBuilder();
        while (lines.Count < count)
        {
            var read = await stream.ReadAsync(buffer, cancellationToken);
            if (read == 0)
            {
                lines.Add("(connection closed)");
                break;
            }

            pending.Append(Encoding.UTF8.GetString(buffer, 0, read));
            var text = pending.ToString();
            int end;
            while (lines.Count < count && (end = text.IndexOf("\r\n", StringComparison.Ordinal)) >= 0)
            {
                lines.Add(text[..end]);
                text = text[(end + 2)..];
            }

            pending.Clear().Append(text);
        }

        return lines;
    }
}
