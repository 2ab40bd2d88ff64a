using System.IO.Compression;
using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text;
using System.Text.Json;
using System.Xml.Linq;
using AppHost.Tests.Infrastructure;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using Package.Tests.Infrastructure;
using RedisTestServer;
using Xunit.Abstractions;

namespace Package.Tests;

/// <summary>
/// The package as people outside this repository get it: <c>dotnet pack Adapter</c>, its metadata, readme, XML docs and
/// symbols; and a fresh two-server sample that installs it from a folder feed and passes a message through a real
/// redis-server.
/// </summary>
public sealed class PackageTests(PackageFixture package, ITestOutputHelper output) : IClassFixture<PackageFixture>
{
    private const string AssemblyEntry = "lib/net10.0/SignalR.RedisStreams.dll";
    private static readonly TimeSpan DeliveryTimeout = TimeSpan.FromSeconds(15);

    /// <summary>The GUID of the SourceLink custom debug information in a portable PDB.</summary>
    private static readonly Guid SourceLinkKind = new("CC110556-A091-4D38-9FEC-25AB9A351A6A");

    [Fact]
    public void The_package_has_an_id_a_description_tags_a_licence_expression_and_its_own_readme()
    {
        var ns = package.Nuspec.Name.Namespace;
        var metadata = package.Nuspec.Element(ns + "metadata")!;
        string? Value(string name) => metadata.Element(ns + name)?.Value;

        Assert.Equal(PackageFixture.PackageId, Value("id"));
        Assert.Contains("SignalR backplane", Value("description"), StringComparison.Ordinal);
        Assert.Contains("Redis stream", Value("description"), StringComparison.Ordinal);
        Assert.Superset(new HashSet<string> { "signalr", "backplane", "redis", "redis-streams" }, Value("tags")!.Split(' ').ToHashSet());
        var license = metadata.Element(ns + "license")!;
        Assert.Equal("expression", license.Attribute("type")?.Value);
        Assert.Equal("MIT", license.Value);

        // Its own readme: the one-line switch, the options, the guarantee.
        Assert.Equal("PACKAGE.md", Value("readme"));
        var readme = ReadEntry(package.PackagePath, "PACKAGE.md");
        Assert.Equal(File.ReadAllText(Path.Combine(package.RepositoryRoot, "Adapter", "PACKAGE.md")), readme);
        Assert.Contains("+    .AddRedisStreams(", readme, StringComparison.Ordinal);
        Assert.Contains("## Options", readme, StringComparison.Ordinal);
        Assert.Contains("## The guarantee", readme, StringComparison.Ordinal);

        // What a consumer gets with it: the ASP.NET Core shared framework and StackExchange.Redis, no analyzers.
        Assert.Contains(metadata.Descendants(ns + "frameworkReference"), f => f.Attribute("name")?.Value == "Microsoft.AspNetCore.App");
        var dependencies = metadata.Descendants(ns + "dependency").Select(d => d.Attribute("id")!.Value).ToList();
        Assert.Contains("StackExchange.Redis", dependencies);
        Assert.DoesNotContain(dependencies, d => d.Contains("Analyzers", StringComparison.Ordinal));
    }

    [Fact]
    public void The_package_carries_XML_docs_for_every_public_type_and_member()
    {
        var docs = XElement.Parse(ReadEntry(package.PackagePath, "lib/net10.0/SignalR.RedisStreams.xml"))
            .Descendants("member").Select(m => m.Attribute("name")!.Value).ToHashSet(StringComparer.Ordinal);
        var publicApi = PublicDocumentationIds(ReadEntryBytes(package.PackagePath, AssemblyEntry));
        output.WriteLine($"{publicApi.Count} public types and members, {docs.Count} documented members");

        Assert.True(publicApi.Count > 40, "the public surface was read: " + string.Join(", ", publicApi));
        var undocumented = publicApi.Where(id => !docs.Any(d => d == id || d.StartsWith(id + "(", StringComparison.Ordinal) || d.StartsWith(id + "``", StringComparison.Ordinal))).ToList();
        Assert.Empty(undocumented);
    }

    [Fact]
    public void The_symbols_package_holds_a_deterministic_PDB_whose_SourceLink_points_at_the_packed_commit_on_GitHub()
    {
        var ns = package.Nuspec.Name.Namespace;
        var repository = package.Nuspec.Element(ns + "metadata")!.Element(ns + "repository")!;
        Assert.Equal(PackageFixture.StandInOrigin + ".git", repository.Attribute("url")?.Value);
        Assert.Equal(package.Commit, repository.Attribute("commit")?.Value);

        Assert.True(File.Exists(package.SymbolsPackagePath), "no .snupkg next to the .nupkg");
        using var peReader = new PEReader(new MemoryStream(ReadEntryBytes(package.PackagePath, AssemblyEntry)));
        var debugDirectory = peReader.ReadDebugDirectory();
        Assert.Contains(debugDirectory, e => e.Type == DebugDirectoryEntryType.Reproducible); // a deterministic build
        var codeView = peReader.ReadCodeViewDebugDirectoryData(debugDirectory.Single(e => e.Type == DebugDirectoryEntryType.CodeView));

        using var pdbProvider = MetadataReaderProvider.FromPortablePdbStream(new MemoryStream(ReadEntryBytes(package.SymbolsPackagePath, "lib/net10.0/SignalR.RedisStreams.pdb")));
        var pdb = pdbProvider.GetMetadataReader();
        Assert.Equal(codeView.Guid, new BlobContentId(pdb.DebugMetadataHeader!.Id).Guid); // the PDB of this very DLL

        var sourceLink = pdb.CustomDebugInformation
            .Select(pdb.GetCustomDebugInformation)
            .Single(c => pdb.GetGuid(c.Kind) == SourceLinkKind);
        var json = Encoding.UTF8.GetString(pdb.GetBlobBytes(sourceLink.Value));
        output.WriteLine("SourceLink: " + json);
        var documents = JsonDocument.Parse(json).RootElement.GetProperty("documents");
        var mapping = Assert.Single(documents.EnumerateObject());
        Assert.Equal("/_/*", mapping.Name); // CI build: source paths normalised
        var owner = new Uri(PackageFixture.StandInOrigin).AbsolutePath;
        Assert.Equal($"https://raw.githubusercontent.com{owner}/{package.Commit}/*", mapping.Value.GetString());
        Assert.All(pdb.Documents.Select(d => pdb.GetString(pdb.GetDocument(d).Name)), name => Assert.StartsWith("/_/", name, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Two_servers_of_a_fresh_sample_that_installed_the_package_from_the_folder_feed_pass_messages_through_redis()
    {
        // Restored from the folder feed into the sample's own packages folder.
        var restored = Path.Combine(package.SamplePackages, PackageFixture.PackageId.ToLowerInvariant(), package.Version);
        var source = JsonDocument.Parse(File.ReadAllText(Path.Combine(restored, ".nupkg.metadata"))).RootElement.GetProperty("source").GetString();
        Assert.Equal(Path.GetFullPath(package.Feed).TrimEnd('/'), Path.GetFullPath(source!).TrimEnd('/'));
        Assert.True(File.Exists(Path.Combine(Path.GetDirectoryName(package.SampleAssembly)!, "SignalR.RedisStreams.dll")));

        await using var redis = await RedisServer.StartAsync();
        await using var serverA = await SampleServer.StartAsync(package.SampleAssembly, "server-a", redis.ConnectionString);
        await using var serverB = await SampleServer.StartAsync(package.SampleAssembly, "server-b", redis.ConnectionString);
        try
        {
            await using var alice = await ConnectAsync(serverA);
            await using var bob = await ConnectAsync(serverB);
            var toBob = Expect(bob, "hello from server-a");
            var toAlice = Expect(alice, "hello from server-b");

            await alice.InvokeAsync("Send", "hello from server-a");
            await bob.InvokeAsync("Send", "hello from server-b");

            await Eventually.WithinAsync(toBob, DeliveryTimeout, "bob on server-b to receive alice's message from server-a");
            await Eventually.WithinAsync(toAlice, DeliveryTimeout, "alice on server-a to receive bob's message from server-b");
        }
        catch
        {
            output.WriteLine("server-a:\n" + serverA.Output + "\nserver-b:\n" + serverB.Output);
            throw;
        }
    }

    private static async Task<HubConnection> ConnectAsync(SampleServer server)
    {
        var connection = new HubConnectionBuilder().WithUrl(new Uri(server.Url, "/chat"), HttpTransportType.WebSockets).Build();
        await connection.StartAsync();
        return connection;
    }

    private static Task<string> Expect(HubConnection connection, string text)
    {
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.On<string>("message", message =>
        {
            if (message == text)
            {
                received.TrySetResult(message);
            }
        });
        return received.Task;
    }

    private static string ReadEntry(string package, string name) => Encoding.UTF8.GetString(ReadEntryBytes(package, name));

    private static byte[] ReadEntryBytes(string package, string name)
    {
        using var zip = ZipFile.OpenRead(package);
        var entry = zip.GetEntry(name) ?? throw new InvalidOperationException($"{Path.GetFileName(package)} has no {name}: {string.Join(", ", zip.Entries.Select(e => e.FullName))}");
        using var stream = entry.Open();
        using var bytes = new MemoryStream();
        stream.CopyTo(bytes);
        return bytes.ToArray();
    }

    /// <summary>
    /// The documentation ids (without parameter lists) of the assembly's publicly visible types and members: public and
    /// protected members of public types (constructors included); property and event accessors are covered by their
    /// property or event.
    /// </summary>
    private static List<string> PublicDocumentationIds(byte[] assembly)
    {
        using var peReader = new PEReader(new MemoryStream(assembly));
        var reader = peReader.GetMetadataReader();
        var ids = new List<string>();
        foreach (var handle in reader.TypeDefinitions)
        {
            var type = reader.GetTypeDefinition(handle);
            if (!IsVisible(reader, type))
            {
                continue;
            }

            var typeName = FullName(reader, type);
            ids.Add("T:" + typeName);
            var methods = type.GetMethods().Select(reader.GetMethodDefinition).ToList();
            foreach (var method in methods)
            {
                var name = reader.GetString(method.Name);
                if (!IsVisible(method.Attributes) || (method.Attributes.HasFlag(MethodAttributes.SpecialName) && name != ".ctor"))
                {
                    continue;
                }

                ids.Add($"M:{typeName}.{(name == ".ctor" ? "#ctor" : name)}");
            }

            foreach (var property in type.GetProperties().Select(reader.GetPropertyDefinition))
            {
                var accessors = property.GetAccessors();
                var accessor = accessors.Getter.IsNil ? accessors.Setter : accessors.Getter;
                if (IsVisible(reader.GetMethodDefinition(accessor).Attributes))
                {
                    ids.Add($"P:{typeName}.{reader.GetString(property.Name)}");
                }
            }

            foreach (var field in type.GetFields().Select(reader.GetFieldDefinition))
            {
                var access = field.Attributes & FieldAttributes.FieldAccessMask;
                if (access is FieldAttributes.Public or FieldAttributes.Family or FieldAttributes.FamORAssem)
                {
                    ids.Add($"F:{typeName}.{reader.GetString(field.Name)}");
                }
            }

            foreach (var @event in type.GetEvents().Select(reader.GetEventDefinition))
            {
                if (IsVisible(reader.GetMethodDefinition(@event.GetAccessors().Adder).Attributes))
                {
                    ids.Add($"E:{typeName}.{reader.GetString(@event.Name)}");
                }
            }
        }

        return ids;
    }

    private static bool IsVisible(MethodAttributes attributes)
        => (attributes & MethodAttributes.MemberAccessMask) is MethodAttributes.Public or MethodAttributes.Family or MethodAttributes.FamORAssem;

    private static bool IsVisible(MetadataReader reader, TypeDefinition type)
    {
        var visibility = type.Attributes & TypeAttributes.VisibilityMask;
        return visibility switch
        {
            TypeAttributes.Public => true,
            TypeAttributes.NestedPublic or TypeAttributes.NestedFamily or TypeAttributes.NestedFamORAssem
                => IsVisible(reader, reader.GetTypeDefinition(type.GetDeclaringType())),
            _ => false,
        };
    }

    private static string FullName(MetadataReader reader, TypeDefinition type)
    {
        var name = reader.GetString(type.Name);
        var declaring = type.GetDeclaringType();
        return declaring.IsNil
            ? reader.GetString(type.Namespace) + "." + name
            : FullName(reader, reader.GetTypeDefinition(declaring)) + "." + name;
    }
}
