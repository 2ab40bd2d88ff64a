namespace SignalR.RedisStreams.Tests.Cluster;

/// <summary>Appends each cluster fault's counts to <c>TestResults/chaos-report.txt</c> at the repository root, which
/// <c>test.sh</c> prints after the run next to the AppHost's chaos counts.</summary>
internal static class ClusterChaosReport
{
    private static readonly Lock Gate = new();

    public static void Write(string fault, string counts)
    {
        if (RedisTestServer.RepositoryRoot.Find(AppContext.BaseDirectory) is not { } root)
        {
            return;
        }

        var file = Path.Combine(root, "TestResults", "chaos-report.txt");
        lock (Gate)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            File.AppendAllLines(file, [$"{DateTime.UtcNow:HH:mm:ss} {fault}: {counts}"]);
        }
    }
}
