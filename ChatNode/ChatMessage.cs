namespace ChatNode;

/// <summary>A chat message as clients receive it in the <c>message</c> event.</summary>
/// <param name="From">The sender's user id, from its sign-in (never from anything the client says).</param>
/// <param name="Text">The text.</param>
/// <param name="Room">The room it was sent to; null for a message to everyone or to one user.</param>
/// <param name="Node">The node whose hub sent it (shows the backplane at work).</param>
/// <param name="Sent">When the sender's node handled it (UTC).</param>
/// <param name="To">For a message to one user, that user; otherwise null.</param>
public sealed record ChatMessage(string From, string Text, string? Room, string Node, DateTimeOffset Sent, string? To = null);
