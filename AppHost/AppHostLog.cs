using Microsoft.Extensions.Logging;

namespace AppHost;

internal static partial class AppHostLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Chat page (load balancer): {Url}")]
    public static partial void ChatPageReady(ILogger logger, string url);
}
