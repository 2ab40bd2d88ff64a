using System.Globalization;
using Microsoft.Playwright;

namespace AppHost.Tests.Browser;

/// <summary>
/// One browser tab on the chat page, in a browser context of its own (its own cookies, so its own node and user),
/// with the actions a person takes on it and the waits a test needs. Every wait has a deadline.
/// </summary>
internal sealed class ChatPage : IAsyncDisposable
{
    private static readonly float DefaultTimeoutMs = 30_000;

    private readonly IBrowserContext _context;
    private readonly List<string> _foreignRequests = [];

    private ChatPage(IBrowserContext context, IPage page, string label, Uri origin)
    {
        _context = context;
        Page = page;
        Label = label;
        page.SetDefaultTimeout(DefaultTimeoutMs);
        page.Request += (_, request) =>
        {
            var url = new Uri(request.Url);
            if (url.Scheme is "http" or "https" or "ws" or "wss" && (url.Host != origin.Host || url.Port != origin.Port))
            {
                lock (_foreignRequests)
                {
                    _foreignRequests.Add(request.Url);
                }
            }
        };
    }

    public IPage Page { get; }

    /// <summary>A short name for screenshots and messages (page-1, ...).</summary>
    public string Label { get; }

    /// <summary>The node that served the page (and, through the affinity cookie, its sign-in and hub connection).</summary>
    public string PageNode { get; private set; } = "";

    /// <summary>Requests to anywhere but the balancer: the page must make none.</summary>
    public IReadOnlyList<string> ForeignRequests
    {
        get
        {
            lock (_foreignRequests)
            {
                return [.. _foreignRequests];
            }
        }
    }

    /// <summary>Opens the page in a new context of <paramref name="browser"/> with a viewport <paramref name="width"/> px wide.</summary>
    public static async Task<ChatPage> OpenAsync(IBrowser browser, Uri url, string label, int width)
    {
        var context = await browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = width, Height = 800 } });
        var page = await context.NewPageAsync();
        var chat = new ChatPage(context, page, label, url);
        await page.GotoAsync(url.ToString());
        await page.WaitForFunctionAsync("() => document.getElementById('page-node').textContent !== '?'");
        chat.PageNode = (await page.Locator("#page-node").TextContentAsync())!;
        return chat;
    }

    public async Task SignInAsync(string user)
    {
        await Assertions.Expect(Page.Locator("#state")).ToHaveAttributeAsync("data-state", "signed-out");
        await Page.FillAsync("#user", user);
        await Page.ClickAsync("#signin-button");
        await Assertions.Expect(Page.Locator("#user-name")).ToHaveTextAsync(user);
    }

    /// <summary>The state shown (#state's data-state) and its text.</summary>
    public async Task<(string State, string Text)> StateAsync() =>
        ((await Page.Locator("#state").GetAttributeAsync("data-state"))!, (await Page.Locator("#state").TextContentAsync())!);

    /// <summary>Waits until the page shows one of <paramref name="states"/>.</summary>
    public async Task WaitForStateAsync(TimeSpan timeout, params string[] states)
    {
        ArgumentNullException.ThrowIfNull(states);
        try
        {
            await Page.WaitForFunctionAsync(
                "states => states.includes(document.getElementById('state').dataset.state)",
                states,
                new PageWaitForFunctionOptions { Timeout = (float)timeout.TotalMilliseconds });
        }
        catch (TimeoutException ex)
        {
            var (state, text) = await StateAsync();
            throw new TimeoutException($"{Label}: not {string.Join(" or ", states)} within {timeout.TotalSeconds:0} s; it shows {state}: '{text}'. History: {await StateHistoryAsync()}", ex);
        }
    }

    /// <summary>Every state the page went through, oldest first ("state: text" each).</summary>
    public async Task<string> StateHistoryAsync() =>
        string.Join(" → ", await Page.EvaluateAsync<string[]>("() => window.chatPage.stateHistory.map(s => s.state + ': ' + s.text)"));

    /// <summary>The states alone, oldest first.</summary>
    public Task<string[]> StatesAsync() => Page.EvaluateAsync<string[]>("() => window.chatPage.stateHistory.map(s => s.state)");

    public async Task JoinRoomAsync(string room)
    {
        await Page.FillAsync("#room", room);
        await Page.ClickAsync("#join");
        await Assertions.Expect(Page.Locator("#rooms")).ToContainTextAsync(room);
    }

    public async Task SendToRoomAsync(string text)
    {
        await Page.SelectOptionAsync("#target", "room");
        await Page.FillAsync("#text", text);
        await Page.ClickAsync("#send");
        // The box is emptied once the hub accepted the send.
        await Assertions.Expect(Page.Locator("#text")).ToHaveValueAsync("");
    }

    /// <summary>Waits until the message list has a message whose text ends with <paramref name="text"/>; returns the line.</summary>
    public async Task<ILocator> WaitForMessageAsync(string text, TimeSpan timeout)
    {
        var line = Page.Locator("#messages li.message").Filter(new LocatorFilterOptions { HasText = ": " + text });
        await Assertions.Expect(line).ToHaveCountAsync(1, new LocatorAssertionsToHaveCountOptions { Timeout = (float)timeout.TotalMilliseconds });
        return line;
    }

    /// <summary>Waits until the online list shows <paramref name="user"/>.</summary>
    public Task WaitForOnlineAsync(string user, TimeSpan timeout) =>
        Assertions.Expect(Page.Locator($"#online li[data-user=\"{user}\"]"))
            .ToHaveCountAsync(1, new LocatorAssertionsToHaveCountOptions { Timeout = (float)timeout.TotalMilliseconds });

    /// <summary>The page is no wider than its viewport (nothing to scroll sideways).</summary>
    public Task<bool> FitsItsWidthAsync() =>
        Page.EvaluateAsync<bool>("() => document.documentElement.scrollWidth <= window.innerWidth");

    /// <summary>A full-page screenshot in <paramref name="folder"/>, named after the step and the page.</summary>
    public async Task<string> ScreenshotAsync(string folder, int step, string what)
    {
        var path = Path.Combine(folder, string.Create(CultureInfo.InvariantCulture, $"{step:00}-{what}-{Label}.png"));
        await Page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true });
        return path;
    }

    public async ValueTask DisposeAsync() => await _context.CloseAsync();
}
