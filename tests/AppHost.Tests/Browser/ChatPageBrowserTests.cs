using AppHost.Tests.Chaos;
using AppHost.Tests.Identity;
using AppHost.Tests.Infrastructure;
using Microsoft.Playwright;

namespace AppHost.Tests.Browser;

/// <summary>
/// The chat page in a real browser (headless Chromium) through the balancer of the real app: three pages on three
/// nodes sign in through the page, join a room and see each other's messages; then one page's node is killed while the
/// others go on talking, and that page shows "reconnecting", then "recovered" on another node with the messages sent
/// meanwhile (each once, in order), as the same user, in the same room. Each step takes a screenshot of every page into
/// <c>TestResults/browser/</c>.
/// </summary>
/// <remarks>
/// To add a step (e.g. "recovered, with the messages sent meanwhile"): the pages, the victim and the screenshot folder
/// are fields; a step is a few lines of <see cref="ChatPage"/> calls followed by <see cref="ScreenshotAllAsync"/>.
/// </remarks>
[Collection(SignedInApp.Name)]
public sealed class ChatPageBrowserTests(ChatAppFixture app) : IAsyncLifetime
{
    private const string Room = "browsers";
    private static readonly TimeSpan Delivery = TimeSpan.FromSeconds(15);
    private static readonly string[] Users = ["ana", "ben", "cleo"];

    private readonly string _screenshots = Path.Combine(RepositoryRoot(), "TestResults", "browser");
    private readonly List<ChatPage> _pages = [];
    private IPlaywright? _playwright;
    private IBrowser? _browser;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_screenshots);
        foreach (var old in Directory.GetFiles(_screenshots, "*.png"))
        {
            File.Delete(old);
        }

        (_playwright, _browser) = await ChromiumBrowser.LaunchAsync();
    }

    [Fact]
    public async Task Three_pages_on_three_nodes_chat_and_the_page_whose_node_is_killed_recovers_on_another_node_with_what_it_missed()
    {
        // Step 1: three pages, each served by a different node (the balancer's round robin, then its affinity cookie).
        // The third is a phone: 320 px wide.
        var widths = new[] { 1280, 1024, 320 };
        for (var i = 0; i < Users.Length; i++)
        {
            _pages.Add(await OpenOnANewNodeAsync("page-" + (i + 1), widths[i]));
        }

        for (var i = 0; i < Users.Length; i++)
        {
            var page = _pages[i];
            await page.SignInAsync(Users[i]);
            await page.WaitForStateAsync(TimeSpan.FromSeconds(30), "connected");
            Assert.Equal("Connected on " + page.PageNode, (await page.StateAsync()).Text);
            await page.JoinRoomAsync(Room);
        }

        foreach (var (page, user) in _pages.Zip(Users))
        {
            await page.SendToRoomAsync("hello from " + user);
        }

        foreach (var page in _pages)
        {
            foreach (var (sender, user) in _pages.Zip(Users))
            {
                var line = await page.WaitForMessageAsync("hello from " + user, Delivery);
                // The sender, the room, the sender's node and the time.
                await Assertions.Expect(line).ToContainTextAsync($"{user} in #{Room}: hello from {user}");
                await Assertions.Expect(line.Locator(".meta")).ToHaveTextAsync("via " + sender.PageNode);
                await Assertions.Expect(line.Locator("time")).ToHaveTextAsync(new System.Text.RegularExpressions.Regex(@"\d{1,2}:\d{2}:\d{2}"));
            }

            foreach (var user in Users)
            {
                await page.WaitForOnlineAsync(user, TimeSpan.FromSeconds(15));
            }

            Assert.True(await page.FitsItsWidthAsync(), $"{page.Label} scrolls sideways at its width");
        }

        await ScreenshotAllAsync(1, "chatting");

        // Step 2: the third page's node is killed. That page shows "reconnecting", then is connected on another node.
        var victimPage = _pages[^1];
        var victim = victimPage.PageNode;
        try
        {
            using (var kill = new CancellationTokenSource(TimeSpan.FromMinutes(1)))
            {
                await AppFaults.KillAsync(app.App, victim, kill.Token);
            }

            // While the page is away, the others go on talking in the room.
            var missed = new[] { "while you were away 1", "while you were away 2", "while you were away 3" };
            foreach (var line in missed)
            {
                await _pages[0].SendToRoomAsync(line);
            }

            await victimPage.WaitForStateAsync(TimeSpan.FromSeconds(40), "reconnecting", "connected", "recovered", "not-recovered");
            await ScreenshotAllAsync(2, "node-killed");
            await victimPage.WaitForStateAsync(TimeSpan.FromSeconds(40), "connected", "recovered", "not-recovered");
            await ScreenshotAllAsync(3, "recovered");

            var states = await victimPage.StatesAsync();
            var history = await victimPage.StateHistoryAsync();
            var reconnecting = Array.LastIndexOf(states, "reconnecting");
            Assert.True(reconnecting > 0, "the page never showed 'reconnecting': " + history);
            // Step 3: recovered on another node, with the messages sent meanwhile replayed: each once, in order.
            Assert.True(states[^1] == "recovered", "the page did not end 'recovered': " + history);
            var (_, recoveredText) = await victimPage.StateAsync();
            Assert.Matches(@"^Recovered on chatnode-\d \(\d+ missed messages? replayed\)$", recoveredText);
            var replayed = int.Parse(System.Text.RegularExpressions.Regex.Match(recoveredText, @"\((\d+) missed").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(replayed >= missed.Length, $"{replayed} replayed, {missed.Length} sent while the page was away");
            foreach (var line in missed)
            {
                await victimPage.WaitForMessageAsync(line, Delivery);
            }
            var lines = await victimPage.Page.Locator("#messages li.message").AllInnerTextsAsync();
            var positions = missed.Select(t => lines.ToList().FindIndex(l => l.Contains(": " + t, StringComparison.Ordinal))).ToList();
            // The list shows the newest first.
            Assert.True(positions.SequenceEqual(positions.OrderDescending()), "missed messages out of order: " + string.Join(" | ", lines));

            var (_, text) = await victimPage.StateAsync();
            var newNode = app.NodeNames.Single(n => text.Contains(" on " + n, StringComparison.Ordinal));
            Assert.NotEqual(victim, newNode);
            await Assertions.Expect(victimPage.Page.Locator("#user-name")).ToHaveTextAsync(Users[^1]);

            // Still in the room, as the same user: a message from the first page reaches it, and its own reach the others.
            await _pages[0].SendToRoomAsync("after the failover");
            await victimPage.WaitForMessageAsync("after the failover", Delivery);
            await victimPage.SendToRoomAsync("cleo is back");
            var back = await _pages[0].WaitForMessageAsync("cleo is back", Delivery);
            await Assertions.Expect(back).ToContainTextAsync($"{Users[^1]} in #{Room}: cleo is back");
            await Assertions.Expect(back.Locator(".meta")).ToHaveTextAsync("via " + newNode);
            await ScreenshotAllAsync(4, "after-failover");

            Assert.All(_pages, p => Assert.Empty(p.ForeignRequests));
        }
        finally
        {
            using var restart = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            await AppFaults.StartAsync(app.App, victim, restart.Token);
            await ChatClients.PinToNodeAsync(app.BalancerUrl, victim, maxAttempts: 200, cancellationToken: restart.Token);
        }
    }

    /// <summary>Opens the page in fresh contexts until one is served by a node no other page is on (bounded).</summary>
    private async Task<ChatPage> OpenOnANewNodeAsync(string label, int width)
    {
        for (var attempt = 0; attempt < 30; attempt++)
        {
            var page = await ChatPage.OpenAsync(_browser!, app.BalancerUrl, label, width);
            if (!_pages.Any(p => p.PageNode == page.PageNode))
            {
                return page;
            }

            await page.DisposeAsync();
        }

        throw new InvalidOperationException($"The balancer never served {label} from a node the other pages are not on.");
    }

    /// <summary>The folder of ReferenceApp.sln above the test's binaries (else the current folder).</summary>
    private static string RepositoryRoot() => ChaosLog.FindRoot() ?? Directory.GetCurrentDirectory();

    private async Task ScreenshotAllAsync(int step, string what)
    {
        foreach (var page in _pages)
        {
            await page.ScreenshotAsync(_screenshots, step, what);
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var page in _pages)
        {
            await page.DisposeAsync();
        }

        if (_browser is not null)
        {
            await _browser.DisposeAsync();
        }

        _playwright?.Dispose();
    }
}
