using Microsoft.Playwright;

namespace AppHost.Tests.Browser;

/// <summary>
/// Headless Chromium, the system's (Debian's <c>chromium</c> package, which <c>test.sh</c> installs), driven through
/// Playwright's driver that ships in the Microsoft.Playwright package; Playwright never downloads a browser here.
/// <c>CHROMIUM_PATH</c> overrides the executable. Each launch gets a fresh temporary profile (Playwright's
/// <c>--user-data-dir</c>), and the flags that keep Chromium from calling home on a closed network.
/// </summary>
internal static class ChromiumBrowser
{
    public const string DefaultPath = "/usr/bin/chromium";

    private static readonly string[] Flags =
    [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ];

    public static string ExecutablePath =>
        Environment.GetEnvironmentVariable("CHROMIUM_PATH") is { Length: > 0 } path ? path : DefaultPath;

    public static async Task<(IPlaywright Playwright, IBrowser Browser)> LaunchAsync()
    {
        if (!File.Exists(ExecutablePath))
        {
            throw new FileNotFoundException($"No Chromium at {ExecutablePath}: run ./test.sh (it installs Debian's chromium), or set CHROMIUM_PATH.", ExecutablePath);
        }

        var playwright = await Microsoft.Playwright.Playwright.CreateAsync();
        try
        {
            var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = ExecutablePath,
                Headless = true,
                ChromiumSandbox = false,
                Args = Flags,
                Timeout = 60_000,
            });
            return (playwright, browser);
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
    }
}
