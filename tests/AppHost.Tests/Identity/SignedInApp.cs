using AppHost.Tests.Infrastructure;

namespace AppHost.Tests.Identity;

/// <summary>
/// One app (3 nodes, the balancer, the default configuration) shared by the identity, balancer, recovery, browser and
/// Redis chaos tests, so that the suite starts it once. Tests that kill a node start it again, and wait until the
/// balancer routes to it, before they end; tests that restart Redis wait until every node reads again.
/// </summary>
[CollectionDefinition(Name)]
public sealed class SignedInApp : ICollectionFixture<ChatAppFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "signed-in app";
}
