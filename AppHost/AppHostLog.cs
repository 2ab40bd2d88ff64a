using Microsoft.Extensions.Logging;

namespace AppHost;

internal static partial class AppHostLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Chat page (load balancer): {Url}")]
    public static partial void ChatPageReady(ILogger logger, string url);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "Fault '{Command}' on {Resource}: started")]
    public static partial void FaultCommandStarted(ILogger logger, string command, string resource);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Fault '{Command}' on {Resource}: {Outcome}")]
    public static partial void FaultCommandSucceeded(ILogger logger, string command, string resource, string outcome);

    [LoggerMessage(EventId = 4, Level = LogLevel.Error, Message = "Fault '{Command}' on {Resource} failed: {Error}")]
    public static partial void FaultCommandFailed(ILogger logger, string command, string resource, string error, Exception exception);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "{Resource} did not come up healthy after a fault's restart (attempt {Attempt}): it ended with state {State}, exit code {ExitCode}; starting it again")]
    public static partial void RestartAttemptFailed(ILogger logger, string resource, int attempt, string state, string exitCode);
}
