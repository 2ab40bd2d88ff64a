using AppHost;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text.RegularExpressions;
using AppHost.Faults;
using AppHost.Tests.Infrastructure;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace AppHost.Tests.Chaos;

/// <summary>The app with a short stream (<c>RedisStreams__MaxLength=100</c> on every node), so that a node frozen
/// for a moment falls behind trimming, and short-lived recovery sessions (10 s), so that one expires within a test.
/// Shared by the classes of the <see cref="ShortStreamApp"/> collection.</summary>
public sealed class ShortStreamAppFixture : ChatAppFixture
{
    public const int MaxLength = 100;

    public static readonly TimeSpan MaxDisconnection = TimeSpan.FromSeconds(10);

    protected override IEnumerable<string> AppHostArgs() =>
        [.. base.AppHostArgs(), $"{AppHostSettings.MaxDisconnectionKey}={MaxDisconnection:c}"];

    protected override void ConfigureBuilder(IDistributedApplicationTestingBuilder builder)
    {
        base.ConfigureBuilder(builder);
        foreach (var project in builder.Resources.OfType<ProjectResource>().Where(p => p.Name.StartsWith("chatnode-", StringComparison.Ordinal)).ToList())
        {
            builder.CreateResourceBuilder(project).WithEnvironment("RedisStreams__MaxLength", MaxLength.ToString(CultureInfo.InvariantCulture));
        }
    }
}

/// <summary>A node frozen (SIGSTOP) while another sends more than MaxLength: it must report the hole with its exact
/// size, and go on delivering.</summary>
[CollectionDefinition(Name)]
public sealed class ShortStreamApp : ICollectionFixture<ShortStreamAppFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "short stream app";
}

[Collection(ShortStreamApp.Name)]
public sealed partial class TrimmingGapTests(ShortStreamAppFixture app, ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task A_node_frozen_past_trimming_reports_the_gap_with_its_size_and_goes_on()
    {
        const int burst = 600;
        using var timeout = new CancellationTokenSource(Deadline);
        var ct = timeout.Token;
        var frozen = app.NodeNames[1];
        await using var watcher = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, frozen, "gap-watcher", ct);
        var received = new ConcurrentQueue<string>();
        watcher.On<ChatMessageDto>("message", m => received.Enqueue(m.Text));
        await using var sender = await ChatClients.ConnectToNodeAsync(app.BalancerUrl, app.NodeNames[0], "gap-sender", ct);
        var gaps = WatchGapsAsync(frozen, ct);

        var pid = await AppFaults.ApplicationProcessIdAsync(app.App, frozen, ct);
        UnixSignal.Send(pid, UnixSignal.Stop);
        try
        {
            for (var k = 1; k <= burst; k++)
            {
                await sender.InvokeAsync("Send", "gap|" + k.ToString(CultureInfo.InvariantCulture), ct);
            }
        }
        finally
        {
            UnixSignal.Send(pid, UnixSignal.Continue);
        }

        await sender.InvokeAsync("Send", "gap|after", ct);
        await Eventually.TrueAsync(() => Task.FromResult(received.Contains("gap|after")), Deadline, "the frozen node delivers again");
        var burstReceived = received.Count(t => t != "gap|after" && t.StartsWith("gap|", StringComparison.Ordinal));
        await Eventually.TrueAsync(() => Task.FromResult(gaps.Missing + burstReceived >= burst), TimeSpan.FromSeconds(20),
            $"the gap log accounts for every missed message (received {burstReceived}, reported missing {gaps.Missing})");

        ChaosLog.Write(output, $"{frozen} frozen during {burst} sends (MaxLength {ShortStreamAppFixture.MaxLength})",
            $"received {burstReceived}, reported missing {gaps.Missing} in {gaps.Lines.Count} gap log lines");
        Assert.True(gaps.Missing > 0, "trimming happened and was reported");
        Assert.Equal(burst, burstReceived + gaps.Missing);
    }

    private GapWatch WatchGapsAsync(string resource, CancellationToken cancellationToken)
    {
        var watch = new GapWatch();
        var logs = app.App.Services.GetRequiredService<ResourceLoggerService>();
        _ = Task.Run(async () =>
        {
            try
            {
                await foreach (var batch in logs.WatchAsync(ResourceLogCapture.ResolveResource(app.App, resource)).WithCancellation(cancellationToken))
                {
                    foreach (var line in batch)
                    {
                        var match = GapLine().Match(line.Content);
                        if (match.Success)
                        {
                            watch.Add(line.Content, long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture));
                        }
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }, cancellationToken);
        return watch;
    }

    [GeneratedRegex(@"Gap: (\d+) entries from node")]
    private static partial Regex GapLine();

    private sealed class GapWatch
    {
        private long _missing;

        public ConcurrentQueue<string> Lines { get; } = new();

        public long Missing => Interlocked.Read(ref _missing);

        public void Add(string line, long missing)
        {
            Lines.Enqueue(line);
            Interlocked.Add(ref _missing, missing);
        }
    }
}
