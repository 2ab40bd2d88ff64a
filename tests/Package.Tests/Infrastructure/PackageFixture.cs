using System.IO.Compression;
using System.Xml.Linq;

namespace Package.Tests.Infrastructure;

/// <summary>
/// Packs the Adapter once per test class and builds a fresh two-server sample that installs the package:
/// <list type="number">
/// <item>copies what <c>dotnet pack Adapter</c> reads (<c>Adapter/</c> without <c>bin</c>/<c>obj</c>, the
/// <c>Directory.*.props</c>, <c>global.json</c>, <c>.editorconfig</c>) into a temporary git repository, one commit, whose
/// origin is <see cref="StandInOrigin"/>: SourceLink maps sources to the commit on a GitHub origin, and this repository's
/// clones have none (the copy also keeps the pack away from the solution's own <c>bin</c>/<c>obj</c>);</item>
/// <item>packs it (<c>-c Release</c>, as a CI build) into a folder feed;</item>
/// <item>writes the sample (its own csproj naming the package by id and version, a NuGet.config that adds the folder feed
/// to the machine's sources and restores into a packages folder of its own, so no earlier copy of the package is used) and
/// builds it.</item>
/// </list>
/// Everything lives in one temporary folder, deleted afterwards.
/// </summary>
public sealed class PackageFixture : IAsyncLifetime
{
    /// <summary>The package id.</summary>
    public const string PackageId = "SignalR.RedisStreams";

    /// <summary>The origin remote of the packed copy: a stand-in GitHub repository, so that SourceLink has a URL to map to.</summary>
    public const string StandInOrigin = "https://github.com/example/signalr-redis-streams";

    /// <summary>Bound of each dotnet command (a fresh restore and build takes 20-40 s here).</summary>
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(4);

    private DirectoryInfo? _work;

    /// <summary>The repository this test runs from.</summary>
    public string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>The folder feed holding the .nupkg and .snupkg.</summary>
    public string Feed => Path.Combine(Work, "feed");

    /// <summary>The package's version (from the .nupkg's name).</summary>
    public string Version { get; private set; } = "";

    /// <summary>The commit of the packed copy.</summary>
    public string Commit { get; private set; } = "";

    /// <summary>The .nupkg.</summary>
    public string PackagePath => Path.Combine(Feed, $"{PackageId}.{Version}.nupkg");

    /// <summary>The .snupkg (symbols).</summary>
    public string SymbolsPackagePath => Path.Combine(Feed, $"{PackageId}.{Version}.snupkg");

    /// <summary>The sample's folder.</summary>
    public string SampleDirectory => Path.Combine(Work, "sample");

    /// <summary>The sample's own packages folder (its NuGet.config's globalPackagesFolder).</summary>
    public string SamplePackages => Path.Combine(SampleDirectory, "packages");

    /// <summary>The built sample server.</summary>
    public string SampleAssembly => Path.Combine(SampleDirectory, "bin", "Release", "net10.0", "TwoServerSample.dll");

    /// <summary>The package's nuspec.</summary>
    public XElement Nuspec { get; private set; } = null!;

    /// <summary>The output of pack and sample build (for failure messages).</summary>
    public string BuildLog { get; private set; } = "";

    private string Work => _work?.FullName ?? throw new InvalidOperationException("The fixture is not initialized.");

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        _work = Directory.CreateTempSubdirectory("signalr-redisstreams-package-");
        var source = Path.Combine(Work, "src");
        CopySnapshot(source);
        await GitAsync(source, "init", "--quiet", "--initial-branch=main");
        await GitAsync(source, "add", "--all");
        await GitAsync(source, "-c", "user.name=Package test", "-c", "user.email=package-test@example.invalid", "commit", "--quiet", "-m", "snapshot");
        await GitAsync(source, "remote", "add", "origin", StandInOrigin + ".git");
        Commit = (await GitAsync(source, "rev-parse", "HEAD")).Trim();

        BuildLog = await ProcessRunner.RunAsync("dotnet",
            ["pack", Path.Combine(source, "Adapter", "Adapter.csproj"), "-c", "Release", "-o", Feed, "-p:ContinuousIntegrationBuild=true", "--disable-build-servers"],
            source, CommandTimeout);
        var package = Directory.GetFiles(Feed, PackageId + ".*.nupkg").Single();
        Version = Path.GetFileNameWithoutExtension(package)[(PackageId.Length + 1)..];
        Nuspec = ReadNuspec(package);

        WriteSample();
        BuildLog += await ProcessRunner.RunAsync("dotnet", ["build", "-c", "Release", "--disable-build-servers"], SampleDirectory, CommandTimeout);
    }

    /// <inheritdoc />
    public Task DisposeAsync()
    {
        try
        {
            _work?.Delete(recursive: true);
        }
        catch (IOException)
        {
            // a server process still closing a file: the temp folder is left to the OS
        }

        return Task.CompletedTask;
    }

    /// <summary>The nuspec of <paramref name="package"/>.</summary>
    public static XElement ReadNuspec(string package)
    {
        using var zip = ZipFile.OpenRead(package);
        var entry = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using var stream = entry.Open();
        return XElement.Load(stream);
    }

    private void CopySnapshot(string target)
    {
        foreach (var file in new[] { "Directory.Build.props", "Directory.Packages.props", "global.json", ".editorconfig" })
        {
            File.Copy(Path.Combine(RepositoryRoot, file), Path.Combine(target, file).EnsureDirectory());
        }

        var adapter = Path.Combine(RepositoryRoot, "Adapter");
        foreach (var file in Directory.EnumerateFiles(adapter, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(adapter, file);
            if (relative.Split(Path.DirectorySeparatorChar)[0] is "bin" or "obj")
            {
                continue;
            }

            File.Copy(file, Path.Combine(target, "Adapter", relative).EnsureDirectory());
        }
    }

    private void WriteSample()
    {
        var sample = SampleDirectory;
        // Stop MSBuild's and NuGet's upward search for settings at the sample's folder.
        File.WriteAllText(Path.Combine(sample, "Directory.Build.props").EnsureDirectory(), "<Project />\n");
        File.WriteAllText(Path.Combine(sample, "Directory.Build.targets"), "<Project />\n");
        File.WriteAllText(Path.Combine(sample, "Directory.Packages.props"), "<Project />\n");
        File.WriteAllText(Path.Combine(sample, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <add key="globalPackagesFolder" value="packages" />
              </config>
              <packageSources>
                <add key="local-feed" value="{Feed}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(sample, "TwoServerSample.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk.Web">
              <PropertyGroup>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="{PackageId}" Version="{Version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(sample, "Program.cs"), """
            using Microsoft.AspNetCore.SignalR;

            // A chat server on the Redis Streams backplane, as the package's README shows it: one line.
            var builder = WebApplication.CreateBuilder(args);
            builder.Services.AddSignalR().AddRedisStreams(builder.Configuration["Redis"] ?? "localhost:6379");

            var app = builder.Build();
            app.MapGet("/", () => builder.Configuration["Name"] ?? "sample");
            app.MapHub<ChatHub>("/chat");
            app.Run();

            public sealed class ChatHub : Hub
            {
                public Task Send(string text) => Clients.All.SendAsync("message", text);
            }
            """);
    }

    private static async Task<string> GitAsync(string directory, params string[] arguments)
        => await ProcessRunner.RunAsync("git", arguments, directory, TimeSpan.FromSeconds(60));

    private static string FindRepositoryRoot()
        => RedisTestServer.RepositoryRoot.Find(AppContext.BaseDirectory)
           ?? throw new InvalidOperationException("ReferenceApp.sln not found above " + AppContext.BaseDirectory);
}

internal static class PathExtensions
{
    /// <summary>Creates the folder of the file <paramref name="path"/> and returns the path.</summary>
    public static string EnsureDirectory(this string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        return path;
    }
}
