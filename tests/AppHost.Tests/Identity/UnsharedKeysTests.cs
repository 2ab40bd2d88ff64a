using System.Net;
using System.Net.Http.Json;
using AppHost.Tests.Chaos;
using AppHost.Tests.Infrastructure;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using StackExchange.Redis;

namespace AppHost.Tests.Identity;

/// <summary>
/// The app with each node's Data Protection keys in a local folder of its own (<c>DataProtection:KeyStore=Directory</c>),
/// as separate machines or containers have them by default: no key ring in Redis.
/// </summary>
public sealed class UnsharedKeysFixture : ChatAppFixture
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "chat-dataprotection-" + Guid.NewGuid().ToString("N"));

    /// <inheritdoc />
    public override int NodeCount => 2;

    /// <summary>The local key folder of <paramref name="node"/>.</summary>
    public string KeyDirectory(string node) => Path.Combine(_root, node);

    /// <inheritdoc />
    protected override void ConfigureBuilder(IDistributedApplicationTestingBuilder builder)
    {
        base.ConfigureBuilder(builder);
        foreach (var node in builder.Resources.OfType<ProjectResource>().Where(r => NodeNames.Contains(r.Name)).ToList())
        {
            Directory.CreateDirectory(KeyDirectory(node.Name));
            builder.CreateResourceBuilder(node)
                .WithEnvironment("DataProtection__KeyStore", "Directory")
                .WithEnvironment("DataProtection__KeyDirectory", KeyDirectory(node.Name));
        }
    }

    /// <inheritdoc />
    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}

/// <summary>
/// Without the shared key ring, a cookie issued by one node is rejected by the other: what the Redis key ring of the
/// default app prevents (see <see cref="IdentityTests.A_cookie_issued_by_one_node_works_on_every_other_node"/>, the
/// same test against the default app, which passes only because the keys are shared).
/// </summary>
public sealed class UnsharedKeysTests(UnsharedKeysFixture app) : IClassFixture<UnsharedKeysFixture>
{
    [Fact]
    public async Task With_a_key_folder_per_node_a_cookie_issued_by_one_node_is_rejected_by_the_other()
    {
        var (issuer, other) = (app.NodeNames[0], app.NodeNames[1]);
        var issuerUrl = app.App.GetEndpoint(issuer, "http");
        var cookies = new CookieContainer();
        await ChatClients.SignInAsync(issuerUrl, cookies, "olga");
        var authCookie = cookies.GetCookies(issuerUrl)[ChatClients.AuthCookieName]!;

        Assert.Equal(HttpStatusCode.OK, await MeStatusAsync(issuer, authCookie));
        Assert.Equal(HttpStatusCode.Unauthorized, await MeStatusAsync(other, authCookie));

        // The hub on the other node refuses it too.
        using var client = new HttpClient(new SocketsHttpHandler { UseCookies = false }) { BaseAddress = app.App.GetEndpoint(other, "http") };
        using var negotiate = new HttpRequestMessage(HttpMethod.Post, ChatClients.HubPath + "/negotiate?negotiateVersion=1");
        negotiate.Headers.Add("Cookie", authCookie.Name + "=" + authCookie.Value);
        using var response = await client.SendAsync(negotiate);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);

        // Each node made its own key in its own folder, and none is in Redis.
        Assert.NotEmpty(Directory.GetFiles(app.KeyDirectory(issuer), "key-*.xml"));
        Assert.NotEmpty(Directory.GetFiles(app.KeyDirectory(other), "key-*.xml"));
        var connectionString = await app.App.GetConnectionStringAsync(AppFaults.Redis)
            ?? throw new InvalidOperationException("redis has no connection string.");
        await using var redis = await ConnectionMultiplexer.ConnectAsync(connectionString);
        Assert.False(await redis.GetDatabase().KeyExistsAsync("{signalr:chat}:dataprotection-keys"));
    }

    private async Task<HttpStatusCode> MeStatusAsync(string node, Cookie authCookie)
    {
        using var client = new HttpClient(new SocketsHttpHandler { UseCookies = false }) { BaseAddress = app.App.GetEndpoint(node, "http") };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/auth/me");
        request.Headers.Add("Cookie", authCookie.Name + "=" + authCookie.Value);
        using var response = await client.SendAsync(request);
        if (response.IsSuccessStatusCode)
        {
            Assert.Equal("olga", (await response.Content.ReadFromJsonAsync<SignedIn>())?.Name);
        }

        return response.StatusCode;
    }

    private sealed record SignedIn(string Name);
}
