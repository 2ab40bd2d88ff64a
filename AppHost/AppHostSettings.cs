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

    /// <summary>The load generator (TrafficGenerator/): simulated users sending to a room through the balancer.</summary>
    public const string TrafficResourceName = "traffic";

    /// <summary>
    /// Configuration key of the load generator's rate, in messages per second. 0 (the default): the <c>traffic</c>
    /// resource is there but not started; its Start button on the dashboard runs it at <see cref="DefaultTrafficRate"/>.
    /// Above 0: it starts with the app, at that rate. At most <see cref="MaxTrafficRate"/>.
    /// </summary>
    public const string TrafficRateKey = "Traffic:Rate";

    /// <summary>The rate of the load generator when started from the dashboard.</summary>
    public const double DefaultTrafficRate = 2;

    /// <summary>The highest <see cref="TrafficRateKey"/> accepted.</summary>
    public const double MaxTrafficRate = 200;

    /// <summary>Configuration key: connection-state recovery on the chat nodes (the backplane's
    /// <c>ConnectionStateRecovery</c>): <c>true</c> (default) or <c>false</c>.</summary>
    public const string RecoveryKey = "Recovery:Enabled";

    /// <summary>Configuration key: how long a dropped chat connection stays recoverable (a TimeSpan, e.g. <c>00:02:00</c>,
    /// the backplane's default).</summary>
    public const string MaxDisconnectionKey = "Recovery:MaxDisconnection";

    /// <summary>Name of the <paramref name="index"/>-th chat node (1-based): <c>chatnode-1</c>, <c>chatnode-2</c>, ...</summary>
    public static string ChatNodeResourceName(int index) => "chatnode-" + index.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
