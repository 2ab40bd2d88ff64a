namespace RedisTestServer;

/// <summary>Finds the repository's root folder (the one holding <c>ReferenceApp.sln</c>) from the binaries or the current
/// folder, for the test projects and the benchmark that write reports there.</summary>
public static class RepositoryRoot
{
    /// <summary>The first folder holding <c>ReferenceApp.sln</c> at or above one of <paramref name="startDirectories"/>,
    /// tried in order; null when there is none.</summary>
    public static string? Find(params string[] startDirectories)
    {
        foreach (var start in startDirectories)
        {
            for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, "ReferenceApp.sln")))
                {
                    return directory.FullName;
                }
            }
        }

        return null;
    }
}
