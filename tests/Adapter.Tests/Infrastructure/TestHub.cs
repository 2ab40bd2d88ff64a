using Microsoft.AspNetCore.SignalR;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>The hub every test node maps at <c>/hub</c>. Tests mostly drive it through <c>IHubContext&lt;TestHub&gt;</c>;
/// these methods let a client act from inside a hub invocation too.</summary>
public sealed class TestHub : Hub
{
    /// <summary>Returns the caller's connection id. A hub method runs only after the lifetime manager's
    /// <c>OnConnectedAsync</c> finished, so its answer proves the server knows the connection.</summary>
    public string Ping() => Context.ConnectionId;

    /// <summary>Adds the caller to <paramref name="group"/>.</summary>
    public Task JoinGroup(string group) => Groups.AddToGroupAsync(Context.ConnectionId, group);

    /// <summary>Removes the caller from <paramref name="group"/>.</summary>
    public Task LeaveGroup(string group) => Groups.RemoveFromGroupAsync(Context.ConnectionId, group);

    /// <summary>Sends <paramref name="text"/> as a "Send" message to every member of <paramref name="group"/>.</summary>
    public Task SendToGroup(string group, string text) => Clients.Group(group).SendAsync(TestClient.SendMethod, text);

    /// <summary>Sends <paramref name="text"/> as a "Send" message to every connection of <paramref name="user"/>.</summary>
    public Task SendToUser(string user, string text) => Clients.User(user).SendAsync(TestClient.SendMethod, text);

    /// <summary>Sends <paramref name="text"/> back to the caller as an "Echo" message.</summary>
    public Task Echo(string text) => Clients.Caller.SendAsync(TestClient.EchoMethod, text);
}
