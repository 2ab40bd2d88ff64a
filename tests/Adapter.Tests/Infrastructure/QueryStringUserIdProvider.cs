using Microsoft.AspNetCore.SignalR;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>Takes the user id from the <c>user</c> query string parameter, so tests can place one user's connections on several nodes.</summary>
public sealed class QueryStringUserIdProvider : IUserIdProvider
{
    /// <inheritdoc />
    public string? GetUserId(HubConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var user = connection.GetHttpContext()?.Request.Query["user"].ToString();
        return string.IsNullOrEmpty(user) ? null : user;
    }
}
