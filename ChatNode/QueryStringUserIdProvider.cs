using Microsoft.AspNetCore.SignalR;

namespace ChatNode;

/// <summary>
/// The user of a connection is the <c>user</c> query-string value of its request (<c>/hubs/chat?user=alice</c>).
/// A demo without authentication: anyone can claim any name.
/// </summary>
public sealed class QueryStringUserIdProvider : IUserIdProvider
{
    /// <summary>The query-string key.</summary>
    public const string QueryKey = "user";

    /// <inheritdoc />
    public string? GetUserId(HubConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var user = connection.GetHttpContext()?.Request.Query[QueryKey].ToString();
        return string.IsNullOrWhiteSpace(user) ? null : user.Trim();
    }
}
