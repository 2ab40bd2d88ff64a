namespace AppHost.Tests.Infrastructure;

/// <summary>The <c>message</c> event's payload as clients see it (ChatNode's <c>ChatMessage</c>).</summary>
public sealed record ChatMessageDto(string From, string Text, string? Room, string Node);
