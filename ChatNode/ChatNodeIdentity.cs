namespace ChatNode;

/// <summary>The name of this chat node: <c>CHATNODE_NAME</c> (set by the AppHost), else the machine name.</summary>
public sealed class ChatNodeIdentity(string name)
{
    /// <summary>Environment variable the AppHost sets to <c>chatnode-1</c>, <c>chatnode-2</c>, ...</summary>
    public const string EnvironmentVariable = "CHATNODE_NAME";

    /// <summary>This node's name.</summary>
    public string Name { get; } = name;

    /// <summary>Reads <see cref="EnvironmentVariable"/>, falling back to the machine name.</summary>
    public static ChatNodeIdentity FromEnvironment()
    {
        var name = Environment.GetEnvironmentVariable(EnvironmentVariable);
        return new ChatNodeIdentity(string.IsNullOrWhiteSpace(name) ? Environment.MachineName : name);
    }
}
