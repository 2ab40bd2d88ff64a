using ChatNode;
using ChatNode.Hubs;
using ChatNode.Identity;
using ChatNode.Presence;

var builder = WebApplication.CreateBuilder(args);

builder.AddServiceDefaults();
// Redis over TLS (the AppHost's Redis:Tls=true): trust the certificate authority it made for Redis, for Redis only.
var redisCa = builder.Configuration["Redis:CaCertificate"];
builder.AddRedisClient("redis", configureOptions: options =>
{
    if (!string.IsNullOrEmpty(redisCa))
    {
        options.TrustIssuer(redisCa);
    }
});

var keys = ChatKeys.FromConfiguration(builder.Configuration);
builder.Services.AddSingleton(keys);
builder.Services.AddSingleton(ChatNodeIdentity.FromEnvironment());
builder.Services.AddSingleton(TimeProvider.System);

// Identity: a cookie sign-in (Identity/ChatAuthentication.cs) signed with Data Protection keys that every node shares
// in Redis (Identity/ChatDataProtection.cs). The hub takes the user from the cookie's claims: SignalR's default
// IUserIdProvider reads ClaimTypes.NameIdentifier into Context.UserIdentifier.
builder.Services.AddChatDataProtection(builder.Configuration, keys);
builder.Services.AddChatAuthentication();

// Who is online on any node (Presence/).
builder.Services.AddSingleton<PresenceStore>();
builder.Services.AddHostedService<PresenceRefresher>();

builder.Services.AddSignalR()
    .AddMessagePackProtocol()
    // The backplane (Adapter/), on the IConnectionMultiplexer that AddRedisClient registered; options from the
    // "RedisStreams" configuration section (e.g. RedisStreams__MaxLength=5000 in the environment).
    .AddRedisStreams(options =>
    {
        builder.Configuration.GetSection("RedisStreams").Bind(options);
        if (!string.IsNullOrEmpty(redisCa))
        {
            // The backplane's own connections, with the same trust (a connection string alone cannot carry it).
            var configuration = StackExchange.Redis.ConfigurationOptions.Parse(builder.Configuration.GetConnectionString("redis")
                ?? throw new InvalidOperationException("Redis:CaCertificate is set but ConnectionStrings:redis is not."));
            configuration.TrustIssuer(redisCa);
            options.Configuration = configuration;
        }
    });

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
app.UseAuthentication();
app.UseAuthorization();

app.MapGet("/whoami", () => new WhoAmI(node.Name));
app.MapChatAuthentication();
app.MapHub<ChatHub>(ChatHub.Path);
app.MapDefaultEndpoints();

await app.RunAsync();
