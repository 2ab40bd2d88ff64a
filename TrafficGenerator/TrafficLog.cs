using Microsoft.Extensions.Logging;

namespace TrafficGenerator;

internal static partial class TrafficLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information,
        Message = "Traffic: sent {Sent}, delivered {Delivered}, lost {Lost} (on their way: {Pending}; failed to send: {FailedToSend}; duplicates: {Duplicates}; unchecked: {Unchecked}) - users {Users}")]
    public static partial void Totals(ILogger logger, long sent, long delivered, long lost, long pending, long failedToSend, long duplicates, long @unchecked, string users);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Traffic started: {Rate} messages/s to room '{Room}' from {Users} users through {BalancerUrl}")]
    public static partial void Started(ILogger logger, double rate, string room, int users, Uri balancerUrl);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "{User} connected to {Node}")]
    public static partial void Connected(ILogger logger, string user, string node);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "{User} lost its connection to {Node}: {Reason}")]
    public static partial void Disconnected(ILogger logger, string user, string node, string reason);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "{User} could not connect (attempt {Attempt}): {Reason}")]
    public static partial void ConnectFailed(ILogger logger, string user, int attempt, string reason);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "Send #{Sequence} by {User} failed: {Reason}")]
    public static partial void SendFailed(ILogger logger, long sequence, string user, string reason);

    [LoggerMessage(EventId = 7, Level = LogLevel.Error, Message = "LOST: message #{Sequence} (issued {IssuedAt:HH:mm:ss.fff}) had not reached {MissingAt} {Deadline} after its send completed")]
    public static partial void Lost(ILogger logger, long sequence, DateTimeOffset issuedAt, string missingAt, TimeSpan deadline);
}
