namespace ChatNode;

/// <summary>The answer of <c>GET /whoami</c>: <c>{"node":"chatnode-1"}</c>.</summary>
/// <param name="Node">The name of the node that answered.</param>
public sealed record WhoAmI(string Node);
