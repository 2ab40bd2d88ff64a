// YARP in front of the chat nodes. The cluster's one destination, http://chatnode, is resolved by service discovery
// into every node the AppHost lists (services__chatnode__http__0..N-1). Requests without an affinity cookie go
// round-robin; the response sets the cookie, and later requests (the SignalR negotiate and its WebSocket) stay on
// that node.
//
// Health (appsettings.json, cluster "chatnodes"): every 2 s the balancer asks each node's /health (active check; two
// failures in a row, a timeout included, mark it unhealthy), and requests that fail to reach a node count against it
// (passive check, transport failure rate). An unhealthy node gets no new clients, and a client pinned to it is
// redistributed to a healthy node (affinity FailurePolicy Redistribute) and re-pinned there. When every node is
// unhealthy (Redis down: every node's /health says so) the balancer uses them all anyway (HealthyOrPanic) rather than
// refuse everyone.
var builder = WebApplication.CreateBuilder(args);

builder.AddServiceDefaults();

builder.Services.AddReverseProxy()
    .LoadFromConfig(builder.Configuration.GetSection("ReverseProxy"))
    .AddServiceDiscoveryDestinationResolver();

var app = builder.Build();

app.MapDefaultEndpoints();
// The default pipeline: session affinity, load balancing and passive health checks.
app.MapReverseProxy();

await app.RunAsync();
