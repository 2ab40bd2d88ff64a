using Microsoft.Extensions.Options;

namespace SignalR.RedisStreams.Internal;

/// <summary>Start-up validation of <see cref="RedisStreamsOptions"/>; each failure names the option.</summary>
internal sealed class RedisStreamsOptionsValidator : IValidateOptions<RedisStreamsOptions>
{
    public ValidateOptionsResult Validate(string? name, RedisStreamsOptions options)
    {
        var failures = new List<string>();
        const string p = nameof(RedisStreamsOptions) + ".";
        if (string.IsNullOrWhiteSpace(options.StreamName))
        {
            failures.Add($"{p}{nameof(options.StreamName)} must not be empty.");
        }
        if (options.KeyPrefix is null)
        {
            failures.Add($"{p}{nameof(options.KeyPrefix)} must not be null (use \"\" for no prefix).");
        }
        if (options.StreamCount is < 1 or > 64)
        {
            failures.Add($"{p}{nameof(options.StreamCount)} must be between 1 and 64 (was {options.StreamCount}).");
        }
        else if (options.StreamCount > 1 && options.ConnectionStateRecovery)
        {
            failures.Add($"{p}{nameof(options.ConnectionStateRecovery)} cannot be combined with {p}{nameof(options.StreamCount)} > 1 (was {options.StreamCount}): a recovery position orders the packets of one stream only.");
        }
        if (options.MaxLength < 1)
        {
            failures.Add($"{p}{nameof(options.MaxLength)} must be at least 1 (was {options.MaxLength}).");
        }
        if (options.ReadCount < 1)
        {
            failures.Add($"{p}{nameof(options.ReadCount)} must be at least 1 (was {options.ReadCount}).");
        }
        if (options.HeartbeatInterval <= TimeSpan.Zero)
        {
            failures.Add($"{p}{nameof(options.HeartbeatInterval)} must be positive (was {options.HeartbeatInterval}).");
        }
        if (options.HeartbeatTimeout <= options.HeartbeatInterval)
        {
            failures.Add($"{p}{nameof(options.HeartbeatTimeout)} ({options.HeartbeatTimeout}) must be longer than {nameof(options.HeartbeatInterval)} ({options.HeartbeatInterval}).");
        }
        if (options.AckTimeout <= TimeSpan.Zero)
        {
            failures.Add($"{p}{nameof(options.AckTimeout)} must be positive (was {options.AckTimeout}).");
        }
        if (options.OutboxCapacity < 1)
        {
            failures.Add($"{p}{nameof(options.OutboxCapacity)} must be at least 1 (was {options.OutboxCapacity}).");
        }
        if (options.PublishTimeout <= TimeSpan.Zero)
        {
            failures.Add($"{p}{nameof(options.PublishTimeout)} must be positive (was {options.PublishTimeout}).");
        }
        if (options.ReplayWindow < TimeSpan.Zero)
        {
            failures.Add($"{p}{nameof(options.ReplayWindow)} must not be negative (was {options.ReplayWindow}).");
        }
        if (options.ReadBlockTime < TimeSpan.FromMilliseconds(10) || options.ReadBlockTime > TimeSpan.FromSeconds(30))
        {
            failures.Add($"{p}{nameof(options.ReadBlockTime)} must be between 10 ms and 30 s (was {options.ReadBlockTime}).");
        }
        if (options.HealthyReadLag <= TimeSpan.Zero)
        {
            failures.Add($"{p}{nameof(options.HealthyReadLag)} must be positive (was {options.HealthyReadLag}).");
        }
        if (options.MaxDisconnectionDuration <= TimeSpan.Zero || options.MaxDisconnectionDuration > RedisStreamsKeys.InboxLifetime)
        {
            failures.Add($"{p}{nameof(options.MaxDisconnectionDuration)} must be positive and at most {RedisStreamsKeys.InboxLifetime} (was {options.MaxDisconnectionDuration}).");
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
