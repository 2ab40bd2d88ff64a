namespace AppHost.Redis;

/// <summary>
/// A local <c>redis-server</c> process run by the AppHost (used where no container runtime works).
/// Its connection string is <c>host:port,password=...</c>, the shape <c>AddRedisClient</c> expects: the default user,
/// for the AppHost and its tests. The chat nodes connect as the ACL user <see cref="ChatRedisAcl.UserName"/> instead
/// (<see cref="ChatConnectionStringExpression"/>).
/// </summary>
public sealed class RedisServerResource(string name, string command, string workingDirectory, ParameterResource password, ParameterResource chatPassword)
    : ExecutableResource(name, command, workingDirectory), IResourceWithConnectionString
{
    /// <summary>Name of the resource's one endpoint (TCP, RESP).</summary>
    public const string PrimaryEndpointName = "tcp";

    private EndpointReference? _primaryEndpoint;

    /// <summary>The endpoint clients connect to (Aspire's proxy in front of the process's <c>--port</c>).</summary>
    public EndpointReference PrimaryEndpoint => _primaryEndpoint ??= new(this, PrimaryEndpointName);

    /// <summary>The generated password passed to <c>--requirepass</c>.</summary>
    public ParameterResource PasswordParameter { get; } = password;

    /// <summary>The certificates when Redis listens with TLS only (<c>Redis:Tls=true</c>), else null.</summary>
    public RedisTlsFiles? Tls { get; init; }

    private string TlsOption => Tls is null ? "" : ",ssl=true,sslHost=localhost";

    /// <summary>The generated password of the chat nodes' ACL user (<see cref="ChatRedisAcl"/>).</summary>
    public ParameterResource ChatPasswordParameter { get; } = chatPassword;

    /// <summary>The chat nodes' connection string: their ACL user, with the options that keep StackExchange.Redis's
    /// handshake within that user's rights (<see cref="SignalR.RedisStreams.RedisStreamsAcl.ConnectionOptions"/>).</summary>
    public ReferenceExpression ChatConnectionStringExpression =>
        ReferenceExpression.Create($"{PrimaryEndpoint.Property(EndpointProperty.HostAndPort)},user={ChatRedisAcl.UserName},password={ChatPasswordParameter},{SignalR.RedisStreams.RedisStreamsAcl.ConnectionOptions}{TlsOption}");

    /// <inheritdoc />
    public ReferenceExpression ConnectionStringExpression =>
        ReferenceExpression.Create($"{PrimaryEndpoint.Property(EndpointProperty.HostAndPort)},password={PasswordParameter}{TlsOption}");
}
