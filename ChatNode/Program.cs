using ChatNode;
using ChatNode.Hubs;
using Microsoft.AspNetCore.SignalR;

var builder = WebApplication.CreateBuilder(args);

builder.AddServiceDefaults();
builder.AddRedisClient("redis");

builder.Services.AddSingleton(ChatNodeIdentity.FromEnvironment());
builder.Services.AddSingleton<IUserIdProvider, QueryStringUserIdProvider>();
builder.Services.AddSignalR()
    .AddMessagePackProtocol()
    // The backplane (Adapter/), on the IConnectionMultiplexer that AddRedisClient registered; options from the
    // "RedisStreams" configuration section (e.g. RedisStreams__MaxLength=5000 in the environment).
    .AddRedisStreams(options => builder.Configuration.GetSection("RedisStreams").Bind(options));

var app = builder.Build();
var node = app.Services.GetRequiredService<ChatNodeIdentity>();

// Every response says which node served it (the balancer's affinity is visible in the browser's dev tools and in tests).
app.Use((context, next) =>
{
    context.Response.Headers["X-Chat-Node"] = node.Name;
    return next(context);
});

app.UseDefaultFiles();
app.UseStaticFiles();

app.MapGet("/whoami", () => new WhoAmI(node.Name));
app.MapHub<ChatHub>(ChatHub.Path);
app.MapDefaultEndpoints();

await app.RunAsync();
