namespace AppHost;

/// <summary>Resource names and configuration keys of the AppHost (tests use them too).</summary>
public static class AppHostSettings
{
    /// <summary>The Redis resource; nodes read <c>ConnectionStrings:redis</c> through <c>AddRedisClient("redis")</c>.</summary>
    public const string RedisResourceName = "redis";

    /// <summary>The YARP balancer resource; its <c>http</c> endpoint serves the chat page.</summary>
    public const string LoadBalancerResourceName = "loadbalancer";

    /// <summary>Configuration key of the number of chat nodes.</summary>
    public const string ChatNodesKey = "ChatNodes";

    /// <summary>Default number of chat nodes.</summary>
    public const int DefaultChatNodes = 3;

    /// <summary>Name of the <paramref name="index"/>-th chat node (1-based): <c>chatnode-1</c>, <c>chatnode-2</c>, ...</summary>
    public static string ChatNodeResourceName(int index) => "chatnode-" + index.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
