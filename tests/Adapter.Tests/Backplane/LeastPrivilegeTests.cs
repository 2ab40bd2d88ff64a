using System.Globalization;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Internal;
using SignalR.RedisStreams.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace SignalR.RedisStreams.Tests.Backplane;

/// <summary>The backplane as a Redis ACL user with only the rights <see cref="RedisStreamsAcl"/> lists: everything works
/// and Redis refuses nothing (its <c>ACL LOG</c> stays empty), every listed command is really used; and a user that
/// lacks a right fails the node's start with a message that names it, at once, instead of a node that hangs or drops.</summary>
public sealed class LeastPrivilegeTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task The_backplane_works_as_a_user_with_only_the_listed_rights_and_uses_every_one_of_them()
    {
        var (options, configure) = Isolated();
        var user = await CreateUserAsync(RedisStreamsAcl.Rules(options));
        await redis.Server.ExecuteAsync("ACL", "LOG", "RESET");
        await redis.Server.ExecuteAsync("CONFIG", "RESETSTAT");

        await using (var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output, configure, ConnectionString(user)))
        {
            await using var a = await cluster.ConnectAsync(0, user: "alice");
            await using var b = await cluster.ConnectAsync(1, user: "bob");
            await cluster.Hub(0).Groups.AddToGroupAsync(b.ConnectionId, "room");
            await cluster.Hub(0).Clients.All.SendAsync(TestClient.SendMethod, "to all");
            await cluster.Hub(0).Clients.Group("room").SendAsync(TestClient.SendMethod, "to the room");
            await cluster.Hub(0).Clients.User("bob").SendAsync(TestClient.SendMethod, "to bob");
            await cluster.Hub(0).Clients.Client(b.ConnectionId).SendAsync(TestClient.SendMethod, "to b's connection");
            await b.WaitForTextAsync("to b's connection");
            Assert.Equal(["to all", "to the room", "to bob", "to b's connection"], b.Texts);
            await a.WaitForTextAsync("to all");

            // Node 1 says goodbye (deletes its inbox) and node 0 forgets its connections (HSCAN, HDEL).
            var node0 = cluster.Nodes[0].Services.GetRequiredService<BackplaneNode>();
            var node1 = cluster.Nodes[1].Services.GetRequiredService<BackplaneNode>().NodeId;
            await cluster.StopNodeAsync(1);
            await Eventually.TrueAsync(() => !node0.Membership.LiveNodes.Contains(node1), "node 0 sees node 1 gone");
            // A heartbeat of node 0 after that (its inbox's EXPIRE and the lag sample's two HGETALLs run with each).
            var before = (await CommandCallsAsync()).GetValueOrDefault("hgetall");
            await Eventually.TrueAsync(async () => (await CommandCallsAsync()).GetValueOrDefault("hgetall") >= before + 2, "a heartbeat samples the lag (HGETALL)");
        }

        // Connection-state recovery's commands: a session (HSET, PEXPIRE), a group join (HSETNX), and a recovery on the
        // other node (HGETALL, XINFO STREAM, XRANGE of what came after her position).
        await using (var cluster = await TestCluster.StartAsync(redis.Server, 2, HubProtocolKind.Json, output, o =>
        {
            configure(o);
            o.ConnectionStateRecovery = true;
        }, ConnectionString(user)))
        {
            await using var carol = await RecoveringClient.ConnectAsync(cluster.Nodes[0].HubUrl, "carol", HubProtocolKind.Json);
            await carol.Connection.InvokeAsync(nameof(TestHub.JoinGroup), "room");
            await cluster.Hub(0).Clients.Group("room").SendAsync(TestClient.SendMethod, "m1");
            await carol.WaitForCountAsync(1);
            // A packet after carol's position that node 1 has handled, so that her recovery there reads a page (XRANGE).
            await using var dave = await cluster.ConnectAsync(1, user: "dave");
            await cluster.Hub(1).Groups.AddToGroupAsync(dave.ConnectionId, "other");
            await cluster.Hub(0).Clients.Group("other").SendAsync(TestClient.SendMethod, "to the other room");
            await dave.WaitForTextAsync("to the other room");
            var outcome = await carol.ReconnectAsync(cluster.Nodes[1].HubUrl);
            Assert.Equal(SignalR.RedisStreams.Client.RecoveryStatus.Recovered, outcome.Status);
        }

        var refused = (RedisResult[])(await redis.Server.ExecuteAsync("ACL", "LOG"))!;
        Assert.True(refused.Length == 0, "Redis refused the backplane's user: " + string.Join(" | ", refused.Select(Describe)));
        var calls = await CommandCallsAsync();
        output.WriteLine("commands called: " + string.Join(", ", calls.Select(c => $"{c.Key} ×{c.Value}")));
        // PING is StackExchange.Redis's keep-alive of a connection idle for a while, which this short test never is.
        var unused = RedisStreamsAcl.Commands.Where(c => !calls.ContainsKey(c) && c != "ping").ToArray();
        Assert.True(unused.Length == 0, "listed but never called (drop them from RedisStreamsAcl, or exercise them here): " + string.Join(", ", unused));
    }

    [Fact]
    public async Task A_user_without_a_command_it_needs_fails_the_start_naming_the_command()
    {
        var (options, configure) = Isolated();
        var user = await CreateUserAsync(RedisStreamsAcl.Rules(options).Replace(" +xadd", "", StringComparison.Ordinal));

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => TestNode.StartAsync(0, ConnectionString(user), configure, output).WaitAsync(StartDeadline));

        output.WriteLine(ex.Message);
        Assert.Contains("may not run xadd", ex.Message, StringComparison.Ordinal);
        Assert.Contains("ACL SETUSER <user> on ><password> " + RedisStreamsAcl.Rules(options), ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_user_whose_keys_are_elsewhere_fails_the_start_with_redis_refusal()
    {
        var (options, configure) = Isolated();
        var user = await CreateUserAsync(RedisStreamsAcl.Rules(options).Replace("~" + RedisStreamsAcl.KeyPattern(options), "~someone-else:*", StringComparison.Ordinal));

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => TestNode.StartAsync(0, ConnectionString(user), configure, output).WaitAsync(StartDeadline));

        output.WriteLine(ex.Message);
        Assert.Contains("NOPERM", ex.Message, StringComparison.Ordinal);
        Assert.Contains("lacks rights it needs", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_rules_name_only_the_backplanes_keys_no_channel_and_each_command_once()
    {
        var options = new RedisStreamsOptions { KeyPrefix = "app[1]:", StreamName = "chat*" };
        var rules = RedisStreamsAcl.Rules(options);
        Assert.Equal(@"{app\[1\]:chat\**", RedisStreamsAcl.KeyPattern(options));
        Assert.StartsWith(@"resetkeys ~{app\[1\]:chat\** resetchannels -@all +", rules, StringComparison.Ordinal);
        Assert.Equal(RedisStreamsAcl.Commands.Count, RedisStreamsAcl.Commands.Distinct().Count());
        Assert.Equal(RedisStreamsAcl.Commands.Count, rules.Split(' ').Count(r => r.StartsWith('+')));
    }

    private static (RedisStreamsOptions Options, Action<RedisStreamsOptions> Configure) Isolated()
    {
        var id = TestCluster.NewIsolationId();
        void Configure(RedisStreamsOptions o)
        {
            TestCluster.ApplyTestDefaults(o, id);
            o.StreamName = "acl-" + id;
            o.KeyPrefix = "acl" + id + ":";
        }

        var options = new RedisStreamsOptions();
        Configure(options);
        return (options, Configure);
    }

    private async Task<string> CreateUserAsync(string rules)
    {
        var user = "backplane-" + TestCluster.NewIsolationId();
        await redis.Server.ExecuteAsync(["ACL", "SETUSER", user, "reset", "on", ">secret-" + user, .. rules.Split(' ')]);
        output.WriteLine($"ACL SETUSER {user} reset on >*** {rules}");
        return user;
    }

    private string ConnectionString(string user) => $"{redis.Server.ConnectionString},user={user},password=secret-{user},{RedisStreamsAcl.ConnectionOptions}";

    /// <summary>Calls per command since the last <c>CONFIG RESETSTAT</c> (<c>INFO commandstats</c>), lower case,
    /// subcommands as <c>command|subcommand</c>.</summary>
    private async Task<Dictionary<string, long>> CommandCallsAsync()
    {
        var info = (string)(await redis.Server.ExecuteAsync("INFO", "commandstats"))!;
        var calls = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in info.Split('\n'))
        {
            // cmdstat_xadd:calls=12,usec=...   cmdstat_client|setname:calls=2,...
            if (!line.StartsWith("cmdstat_", StringComparison.Ordinal))
            {
                continue;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var count = line[(colon + "calls=".Length + 1)..].Split(',')[0];
            calls[line["cmdstat_".Length..colon]] = long.Parse(count, CultureInfo.InvariantCulture);
        }

        return calls;
    }

    private static string Describe(RedisResult entry)
    {
        var fields = (RedisResult[])entry!;
        return string.Join(' ', fields.Select(f => f.Resp2Type == ResultType.Array ? "[..]" : f.ToString()));
    }
}
