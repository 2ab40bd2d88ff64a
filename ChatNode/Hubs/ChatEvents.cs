namespace ChatNode.Hubs;

/// <summary>Names of the events the hub sends to clients.</summary>
public static class ChatEvents
{
    /// <summary>A <see cref="ChatMessage"/>.</summary>
    public const string Message = "message";

    /// <summary>(user, room): someone is typing in a room the client has joined.</summary>
    public const string Typing = "typing";

    /// <summary>A client result: the hub asks a client for its status and the client returns a string.</summary>
    public const string Status = "status";
}
