using ChatNode.Presence;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.SignalR;

namespace ChatNode.Hubs;

/// <summary>
/// The chat hub, mapped at <see cref="Path"/>. Only signed-in users connect (the auth cookie of <c>POST /auth/signin</c>);
/// a connection's user is <see cref="HubCallerContext.UserIdentifier"/>, which SignalR takes from the cookie's claims, and
/// no method lets a caller say who it is. Rooms are SignalR groups. Every send goes through the backplane, so it
/// reaches clients on all nodes.
/// </summary>
[Authorize]
internal sealed class ChatHub(ChatNodeIdentity node, PresenceStore presence, TimeProvider time) : Hub
{
    /// <summary>Where the hub is mapped.</summary>
    public const string Path = "/hubs/chat";

    private string CurrentUser => Context.UserIdentifier ?? throw new HubException("This connection has no user id.");

    /// <inheritdoc />
    public override Task OnConnectedAsync()
    {
        presence.Add(Context.ConnectionId, CurrentUser);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public override Task OnDisconnectedAsync(Exception? exception)
    {
        presence.Remove(Context.ConnectionId);
        return Task.CompletedTask;
    }

    /// <summary>The name of the node this connection lives on.</summary>
    public Task<string> GetNode() => Task.FromResult(node.Name);

    /// <summary>The user of this connection, as the hub sees it (from the sign-in's claims).</summary>
    public Task<string> GetUser() => Task.FromResult(CurrentUser);

    /// <summary>Every user connected to any node, with the nodes they are on.</summary>
    public Task<IReadOnlyList<OnlineUser>> Online() => presence.ListAsync();

    /// <summary>Sends <paramref name="text"/> to every connected client.</summary>
    public Task Send(string text) =>
        Clients.All.SendAsync(ChatEvents.Message, Message(Require(text, nameof(text)), room: null));

    /// <summary>Adds the caller to <paramref name="room"/>.</summary>
    public Task JoinRoom(string room) => Groups.AddToGroupAsync(Context.ConnectionId, Require(room, nameof(room)));

    /// <summary>Removes the caller from <paramref name="room"/>.</summary>
    public Task LeaveRoom(string room) => Groups.RemoveFromGroupAsync(Context.ConnectionId, Require(room, nameof(room)));

    /// <summary>Sends <paramref name="text"/> to the members of <paramref name="room"/>.</summary>
    public Task SendToRoom(string room, string text)
    {
        Require(room, nameof(room));
        return Clients.Group(room).SendAsync(ChatEvents.Message, Message(Require(text, nameof(text)), room));
    }

    /// <summary>Sends <paramref name="text"/> to every connection of <paramref name="user"/> (no copy to the caller).</summary>
    public Task SendToUser(string user, string text) =>
        Clients.User(Require(user, nameof(user))).SendAsync(ChatEvents.Message, Message(Require(text, nameof(text)), room: null, to: user));

    /// <summary>Sends <paramref name="text"/> to one connection, on any node (a private message to one device).</summary>
    public Task SendToConnection(string connectionId, string text) =>
        Clients.Client(Require(connectionId, nameof(connectionId))).SendAsync(ChatEvents.Message, Message(Require(text, nameof(text)), room: null));

    /// <summary>Tells the other members of <paramref name="room"/> that the caller is typing.</summary>
    public Task Typing(string room) => Clients.OthersInGroup(Require(room, nameof(room))).SendAsync(ChatEvents.Typing, CurrentUser, room);

    /// <summary>
    /// Asks the client <paramref name="connectionId"/> (on any node) for its status: a client result across nodes.
    /// Asking oneself is refused: with one invocation at a time per client it could never be answered.
    /// </summary>
    public async Task<string> AskStatus(string connectionId)
    {
        Require(connectionId, nameof(connectionId));
        if (connectionId == Context.ConnectionId)
        {
            throw new HubException("Ask another connection: a client cannot answer its own status request while it waits for it.");
        }

        return await Clients.Client(connectionId).InvokeAsync<string>(ChatEvents.Status, Context.ConnectionAborted);
    }

    private ChatMessage Message(string text, string? room, string? to = null) =>
        new(CurrentUser, text, room, node.Name, time.GetUtcNow(), to);

    private static string Require(string? value, string name) =>
        string.IsNullOrWhiteSpace(value) ? throw new HubException($"'{name}' must not be empty.") : value;
}
