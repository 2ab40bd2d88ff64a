using Microsoft.Extensions.Options;

namespace TrafficGenerator;

/// <summary>The generator's settings, from the <c>Traffic</c> configuration section (<c>Traffic__Rate=2</c>, ...).</summary>
public sealed class TrafficOptions
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "Traffic";

    /// <summary>Where the balancer's address comes from: the AppHost's <c>WithReference(loadbalancer)</c>.</summary>
    public const string BalancerUrlKey = "services:loadbalancer:http:0";

    /// <summary>Messages per second, all users together. Default 2; at most 200.</summary>
    public double Rate { get; set; } = 2;

    /// <summary>How many simulated users, each pinned to a different node while there are enough nodes. Default 3.</summary>
    public int Users { get; set; } = 3;

    /// <summary>The room every user joins and every message goes to. Default <c>traffic</c>.</summary>
    public string Room { get; set; } = "traffic";

    /// <summary>How long after its send completed a message may take to reach every user before it counts as lost.
    /// Default 20 s.</summary>
    public TimeSpan DeliveryDeadline { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>How often the counts are logged. Default 10 s.</summary>
    public TimeSpan ReportInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The balancer's URL; from <see cref="BalancerUrlKey"/>.</summary>
    public Uri? BalancerUrl { get; set; }

    /// <summary>Null when valid, else what is wrong.</summary>
    public string? Validate() =>
        Rate is <= 0 or > 200 ? $"Traffic:Rate must be above 0 and at most 200 messages/s (was {Rate})."
        : Users is < 1 or > 20 ? $"Traffic:Users must be 1 to 20 (was {Users})."
        : string.IsNullOrWhiteSpace(Room) ? "Traffic:Room must not be empty."
        : DeliveryDeadline <= TimeSpan.Zero ? "Traffic:DeliveryDeadline must be positive."
        : ReportInterval <= TimeSpan.Zero ? "Traffic:ReportInterval must be positive."
        : BalancerUrl is null ? $"No balancer URL: {BalancerUrlKey} is not set (the AppHost sets it with WithReference(loadbalancer))."
        : null;
}

/// <summary>Fails the start with <see cref="TrafficOptions.Validate"/>'s message.</summary>
internal sealed class TrafficOptionsValidation : IValidateOptions<TrafficOptions>
{
    public ValidateOptionsResult Validate(string? name, TrafficOptions options)
        => options.Validate() is { } error ? ValidateOptionsResult.Fail(error) : ValidateOptionsResult.Success;
}
