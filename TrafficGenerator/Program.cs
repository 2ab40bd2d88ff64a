using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using TrafficGenerator;

// Live chat traffic to watch on the dashboard (the AppHost's "traffic" resource; Traffic:Rate turns it on). A few
// simulated users on different nodes send "traffic #N" to one room through the balancer and count what arrives:
// "Traffic: sent N, delivered N, lost 0" in the log, and the chat_traffic.* metrics.
var builder = Host.CreateApplicationBuilder(args);

builder.AddServiceDefaults();
builder.Services.AddOpenTelemetry()
    .WithMetrics(metrics => metrics.AddMeter(TrafficTelemetry.MeterName))
    .WithTracing(tracing => tracing.AddSource(TrafficTelemetry.SignalRClientActivitySourceName));

builder.Services.AddOptions<TrafficOptions>()
    .Bind(builder.Configuration.GetSection(TrafficOptions.SectionName))
    .PostConfigure(options => options.BalancerUrl ??= Uri.TryCreate(builder.Configuration[TrafficOptions.BalancerUrlKey], UriKind.Absolute, out var url) ? url : null)
    .ValidateOnStart();
// Invalid settings stop the start with a message that names the setting.
builder.Services.AddSingleton<IValidateOptions<TrafficOptions>, TrafficOptionsValidation>();
builder.Services.AddSingleton(services => new DeliveryLedger(services.GetRequiredService<IOptions<TrafficOptions>>().Value.DeliveryDeadline));
builder.Services.AddSingleton<UserPool>();
builder.Services.AddSingleton(services => new TrafficTelemetry(
    services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(),
    services.GetRequiredService<DeliveryLedger>(),
    () => services.GetRequiredService<UserPool>().ConnectedCount));
builder.Services.AddHostedService<TrafficWorker>();

var host = builder.Build();
host.Services.GetRequiredService<TrafficTelemetry>(); // the instruments exist from the start
await host.RunAsync();
