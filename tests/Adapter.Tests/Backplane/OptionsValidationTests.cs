using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>Invalid options stop the host at start-up with a message naming the option; nothing hangs.</summary>
public sealed class OptionsValidationTests
{
    public static TheoryData<string, Action<RedisStreamsOptions>> InvalidOptions() => new()
    {
        { "StreamName", o => o.StreamName = "" },
        { "StreamName", o => o.StreamName = "  " },
        { "MaxLength", o => o.MaxLength = 0 },
        { "ReadCount", o => o.ReadCount = 0 },
        { "HeartbeatInterval", o => o.HeartbeatInterval = TimeSpan.Zero },
        { "HeartbeatTimeout", o => o.HeartbeatTimeout = TimeSpan.FromSeconds(5) },
        { "AckTimeout", o => o.AckTimeout = TimeSpan.FromSeconds(-1) },
        { "OutboxCapacity", o => o.OutboxCapacity = 0 },
        { "PublishTimeout", o => o.PublishTimeout = TimeSpan.Zero },
        { "ReplayWindow", o => o.ReplayWindow = TimeSpan.FromSeconds(-1) },
        { "ReadBlockTime", o => o.ReadBlockTime = TimeSpan.FromMinutes(5) },
        { "KeyPrefix", o => o.KeyPrefix = null! },
        { "StreamCount", o => o.StreamCount = 0 },
        { "StreamCount", o => o.StreamCount = 65 },
        { "ConnectionStateRecovery", o => { o.StreamCount = 3; o.ConnectionStateRecovery = true; } },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public async Task An_invalid_option_fails_start_up_with_its_name(string option, Action<RedisStreamsOptions> configure)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        // Port 1 on loopback: nothing listens, and validation must fail before anything connects.
        builder.Services.AddSignalR().AddRedisStreams("127.0.0.1:1,abortConnect=false", configure);
        await using var app = builder.Build();

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());

        Assert.Contains("RedisStreamsOptions." + option, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Several_invalid_options_are_all_named()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddSignalR().AddRedisStreams(o =>
        {
            o.ReadCount = 0;
            o.StreamName = "";
        });
        await using var app = builder.Build();

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());

        Assert.Contains("ReadCount", ex.Message, StringComparison.Ordinal);
        Assert.Contains("StreamName", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Calling_AddRedisStreams_twice_configures_once_and_starts()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddSignalR()
            .AddRedisStreams("127.0.0.1:1,abortConnect=false", o => o.StreamName = "first")
            .AddRedisStreams(o => o.ReadCount = 7);
        await using var app = builder.Build();

        await app.StartAsync();
        var options = app.Services.GetRequiredService<IOptions<RedisStreamsOptions>>().Value;
        var healthChecks = app.Services.GetRequiredService<IOptions<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckServiceOptions>>().Value;
        await app.StopAsync();

        Assert.Equal("first", options.StreamName);
        Assert.Equal(7, options.ReadCount);
        Assert.Single(healthChecks.Registrations, r => r.Name == "signalr-redis-streams");
    }

    [Fact]
    public void The_defaults_are_the_documented_ones()
    {
        var o = new RedisStreamsOptions();

        Assert.Equal("signalr", o.StreamName);
        Assert.Equal("", o.KeyPrefix);
        Assert.Equal(10_000, o.MaxLength);
        Assert.Equal(100, o.ReadCount);
        Assert.Equal(TimeSpan.FromSeconds(5), o.HeartbeatInterval);
        Assert.Equal(TimeSpan.FromSeconds(10), o.HeartbeatTimeout);
        Assert.Equal(TimeSpan.FromSeconds(10), o.AckTimeout);
        Assert.Equal(10_000, o.OutboxCapacity);
        Assert.Equal(TimeSpan.FromSeconds(30), o.PublishTimeout);
        Assert.Equal(TimeSpan.FromSeconds(30), o.ReplayWindow);
    }
}
