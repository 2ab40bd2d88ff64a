using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace AppHost.Redis;

/// <summary>
/// A one-shot RESP connection to the Redis behind <see cref="RedisServerResource.PrimaryEndpoint"/>, authenticated with
/// its password: what the AppHost's health check and fault commands need (<c>PING</c>, <c>DBSIZE</c>,
/// <c>CLIENT KILL</c>, <c>SHUTDOWN SAVE</c>), without a client library and without a cached connection state.
/// </summary>
internal sealed class RedisCommandClient : IAsyncDisposable
{
    private readonly TcpClient _client;
    private readonly Stream _stream;
    private readonly byte[] _buffer = new byte[4096];
    private readonly StringBuilder _pending = new();

    private RedisCommandClient(TcpClient client, Stream stream)
    {
        _client = client;
        _stream = stream;
    }

    /// <summary>Connects and sends <c>AUTH</c>; throws <see cref="RedisCommandException"/> when Redis refuses it.</summary>
    public static async Task<RedisCommandClient> ConnectAsync(RedisServerResource resource, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(resource);
        if (!resource.PrimaryEndpoint.IsAllocated)
        {
            throw new RedisCommandException("The Redis endpoint is not allocated yet.");
        }

        var password = await resource.PasswordParameter.GetValueAsync(cancellationToken) ?? "";
        var tcp = new TcpClient();
        try
        {
            await tcp.ConnectAsync(resource.PrimaryEndpoint.Host, resource.PrimaryEndpoint.Port, cancellationToken);
        }
        catch
        {
            tcp.Dispose();
            throw;
        }

        Stream stream = tcp.GetStream();
        if (resource.Tls is { } tls)
        {
            var ssl = new System.Net.Security.SslStream(stream, leaveInnerStreamOpen: false, (_, certificate, _, errors) => tls.Validate(certificate, errors));
            try
            {
                await ssl.AuthenticateAsClientAsync(new System.Net.Security.SslClientAuthenticationOptions { TargetHost = "localhost" }, cancellationToken);
            }
            catch
            {
                await ssl.DisposeAsync();
                tcp.Dispose();
                throw;
            }

            stream = ssl;
        }

        var client = new RedisCommandClient(tcp, stream);
        try
        {
            var auth = await client.ExecuteAsync(cancellationToken, "AUTH", password);
            if (auth != "OK")
            {
                throw new RedisCommandException("Redis refused AUTH: " + auth);
            }
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }

        return client;
    }

    /// <summary>Connects over plain TCP to <paramref name="host"/>:<paramref name="port"/> (a node of the local Redis
    /// Cluster) and sends <c>AUTH</c> with <paramref name="password"/>.</summary>
    public static async Task<RedisCommandClient> ConnectAsync(string host, int port, string password, CancellationToken cancellationToken)
    {
        var tcp = new TcpClient();
        try
        {
            await tcp.ConnectAsync(host, port, cancellationToken);
        }
        catch
        {
            tcp.Dispose();
            throw;
        }

        var client = new RedisCommandClient(tcp, tcp.GetStream());
        try
        {
            var auth = await client.ExecuteAsync(cancellationToken, "AUTH", password);
            if (auth != "OK")
            {
                throw new RedisCommandException("Redis refused AUTH: " + auth);
            }
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }

        return client;
    }

    /// <summary>
    /// Sends one command and reads its reply: a simple string or a bulk string as its text, an integer as its digits,
    /// null when Redis closed the connection instead of answering (as <c>SHUTDOWN</c> does). An error reply throws
    /// <see cref="RedisCommandException"/>.
    /// </summary>
    public async Task<string?> ExecuteAsync(CancellationToken cancellationToken, params string[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        var command = new StringBuilder().Append('*').Append(parts.Length).Append("\r\n");
        foreach (var part in parts)
        {
            command.Append('$').Append(Encoding.UTF8.GetByteCount(part)).Append("\r\n").Append(part).Append("\r\n");
        }

        await _stream.WriteAsync(Encoding.UTF8.GetBytes(command.ToString()), cancellationToken);

        var line = await ReadLineAsync(cancellationToken);
        if (line is null)
        {
            return null;
        }

        switch (line[0])
        {
            case '+':
            case ':':
                return line[1..];
            case '-':
                throw new RedisCommandException(line[1..]);
            case '$':
                var length = int.Parse(line.AsSpan(1), CultureInfo.InvariantCulture);
                if (length < 0)
                {
                    return null;
                }

                var text = new StringBuilder();
                while (text.Length < length + 2)
                {
                    var chunk = await ReadLineAsync(cancellationToken) ?? throw new RedisCommandException("Redis closed the connection mid-reply.");
                    text.Append(chunk).Append("\r\n");
                }

                return text.ToString(0, length);
            default:
                throw new RedisCommandException("Unexpected reply: " + line);
        }
    }

    /// <summary>The next CRLF-terminated line, or null when the connection was closed before one arrived.</summary>
    private async Task<string?> ReadLineAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var text = _pending.ToString();
            var end = text.IndexOf("\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                _pending.Remove(0, end + 2);
                return text[..end];
            }

            int read;
            try
            {
                read = await _stream.ReadAsync(_buffer, cancellationToken);
            }
            catch (IOException ex) when (ex.InnerException is SocketException)
            {
                return null; // reset by the server
            }

            if (read == 0)
            {
                return null;
            }

            _pending.Append(Encoding.UTF8.GetString(_buffer, 0, read));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _client.Dispose();
    }
}
