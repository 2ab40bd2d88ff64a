namespace ChatNode;

/// <summary>A chat message as clients receive it in the <c>message</c> event.</summary>
/// <param name="From">The sender's user name.</param>
/// <param name="Text">The text.</param>
/// <param name="Room">The room it was sent to; null for a message to everyone or to one user.</param>
/// <param name="Node">The node whose hub sent it (shows the backplane at work).</param>
public sealed record ChatMessage(string From, string Text, string? Room, string Node);
