using System.Diagnostics.Metrics;

namespace TrafficGenerator;

/// <summary>The generator's counts as metrics (meter <see cref="MeterName"/>), next to its log lines: on the dashboard's
/// Metrics page of the <c>traffic</c> resource.</summary>
public sealed class TrafficTelemetry : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "ChatTraffic";

    /// <summary>SignalR's client ActivitySource: a span per hub invocation, whose context travels to the server, so a
    /// message's trace starts in the generator.</summary>
    public const string SignalRClientActivitySourceName = "Microsoft.AspNetCore.SignalR.Client";

    private readonly Meter _meter;

    /// <summary>Publishes <paramref name="ledger"/>'s totals and the number of connected users.</summary>
    public TrafficTelemetry(IMeterFactory meterFactory, DeliveryLedger ledger, Func<int> connectedUsers)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        ArgumentNullException.ThrowIfNull(ledger);
        _meter = meterFactory.Create(MeterName);
        _meter.CreateObservableCounter("chat_traffic.sent", () => ledger.Totals.Sent, "{message}", "Messages whose send completed");
        _meter.CreateObservableCounter("chat_traffic.delivered", () => ledger.Totals.Delivered, "{message}", "Sent messages every connected user received");
        _meter.CreateObservableCounter("chat_traffic.lost", () => ledger.Totals.Lost, "{message}", "Sent messages a connected user lacked at the deadline");
        _meter.CreateObservableCounter("chat_traffic.failed", () => ledger.Totals.FailedToSend, "{message}", "Sends that threw");
        _meter.CreateObservableCounter("chat_traffic.duplicates", () => ledger.Totals.Duplicates, "{message}", "Messages a user received twice");
        _meter.CreateObservableUpDownCounter("chat_traffic.pending", () => ledger.Totals.Pending, "{message}", "Sent messages on their way");
        _meter.CreateObservableUpDownCounter("chat_traffic.users_connected", connectedUsers, "{user}", "Simulated users connected now");
    }

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
