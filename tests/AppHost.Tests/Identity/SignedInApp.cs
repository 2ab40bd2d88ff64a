using AppHost.Tests.Infrastructure;

namespace AppHost.Tests.Identity;

/// <summary>
/// One app (3 nodes, the balancer) shared by the identity tests and the browser test, so that the suite starts it once.
/// Tests that kill a node start it again before they end.
/// </summary>
[CollectionDefinition(Name)]
public sealed class SignedInApp : ICollectionFixture<ChatAppFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "signed-in app";
}
