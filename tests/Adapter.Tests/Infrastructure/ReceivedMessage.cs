namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>One message a <see cref="TestClient"/> received: the client method and its arguments.</summary>
/// <param name="Method">The client method the server called ("Send", "Echo", "Rich", "Sentinel", "Probe").</param>
/// <param name="Text">The text argument ("" for "Probe").</param>
/// <param name="Number">The integer argument of "Rich" and "Probe" messages.</param>
/// <param name="Value">The floating-point argument of "Rich" messages.</param>
public sealed record ReceivedMessage(string Method, string Text, int Number = 0, double Value = 0);
