namespace AppHost.Redis;

/// <summary>
/// A local <c>redis-server</c> process run by the AppHost (used where no container runtime works).
/// Its connection string is <c>host:port,password=...</c>, the shape <c>AddRedisClient</c> expects.
/// </summary>
public sealed class RedisServerResource(string name, string command, string workingDirectory, ParameterResource password)
    : ExecutableResource(name, command, workingDirectory), IResourceWithConnectionString
{
    /// <summary>Name of the resource's one endpoint (TCP, RESP).</summary>
    public const string PrimaryEndpointName = "tcp";

    private EndpointReference? _primaryEndpoint;

    /// <summary>The endpoint clients connect to (Aspire's proxy in front of the process's <c>--port</c>).</summary>
    public EndpointReference PrimaryEndpoint => _primaryEndpoint ??= new(this, PrimaryEndpointName);

    /// <summary>The generated password passed to <c>--requirepass</c>.</summary>
    public ParameterResource PasswordParameter { get; } = password;

    /// <inheritdoc />
    public ReferenceExpression ConnectionStringExpression =>
        ReferenceExpression.Create($"{PrimaryEndpoint.Property(EndpointProperty.HostAndPort)},password={PasswordParameter}");
}
