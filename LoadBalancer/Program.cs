// YARP in front of the chat nodes. The cluster's one destination, http://chatnode, is resolved by service discovery
// into every node the AppHost lists (services__chatnode__http__0..N-1). Requests without an affinity cookie go
// round-robin; the response sets the cookie, and later requests (the SignalR negotiate and its WebSocket) stay on
// that node. Route and cluster: appsettings.json, section ReverseProxy.
var builder = WebApplication.CreateBuilder(args);

builder.AddServiceDefaults();

builder.Services.AddReverseProxy()
    .LoadFromConfig(builder.Configuration.GetSection("ReverseProxy"))
    .AddServiceDiscoveryDestinationResolver();

var app = builder.Build();

app.MapDefaultEndpoints();
app.MapReverseProxy();

await app.RunAsync();
