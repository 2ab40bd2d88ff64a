using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;

namespace ChatNode.Identity;

/// <summary>
/// The sign-in of the chat: a name, no password (a demo), turned into a real authenticated identity in an auth cookie
/// that every node accepts (the Data Protection keys that sign it are shared, see <see cref="ChatDataProtection"/>).
/// <c>POST /auth/signin</c> <c>{"name":"alice"}</c> issues the cookie, <c>POST /auth/signout</c> removes it,
/// <c>GET /auth/me</c> says who the cookie is. A production app signs users in with an identity provider instead
/// (OpenID Connect); the hub only needs the claims.
/// </summary>
internal static class ChatAuthentication
{
    /// <summary>The auth cookie.</summary>
    public const string CookieName = ".ChatNode.Auth";

    /// <summary>Where the sign-in endpoints are.</summary>
    public const string BasePath = "/auth";

    /// <summary>The longest user name accepted.</summary>
    public const int MaxNameLength = 40;

    /// <summary>Cookie authentication; unauthenticated calls get 401 (never a redirect: the page and the hub are scripts).</summary>
    public static IServiceCollection AddChatAuthentication(this IServiceCollection services)
    {
        services.AddAuthentication(CookieAuthenticationDefaults.AuthenticationScheme)
            .AddCookie(options =>
            {
                options.Cookie.Name = CookieName;
                options.Cookie.HttpOnly = true;
                // Strict: a page of another site cannot make the browser send it (no cross-site hub connection or sign-out).
                options.Cookie.SameSite = SameSiteMode.Strict;
                // Secure whenever the request is https; the local app and its tests run over http.
                options.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
                options.ExpireTimeSpan = TimeSpan.FromHours(8);
                options.SlidingExpiration = true;
                options.Events.OnRedirectToLogin = context =>
                {
                    context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                    return Task.CompletedTask;
                };
                options.Events.OnRedirectToAccessDenied = context =>
                {
                    context.Response.StatusCode = StatusCodes.Status403Forbidden;
                    return Task.CompletedTask;
                };
            });
        services.AddAuthorization();
        return services;
    }

    /// <summary>Maps the sign-in, sign-out and who-am-I endpoints under <see cref="BasePath"/>.</summary>
    public static IEndpointRouteBuilder MapChatAuthentication(this IEndpointRouteBuilder endpoints)
    {
        var auth = endpoints.MapGroup(BasePath);

        auth.MapPost("/signin", async (SignInRequest request, HttpContext context) =>
        {
            if (!TryNormalize(request.Name, out var name, out var problem))
            {
                return Results.Problem(problem, statusCode: StatusCodes.Status400BadRequest);
            }

            // The user id (NameIdentifier) is what SignalR's default IUserIdProvider turns into Context.UserIdentifier.
            // Here it is the name; with an identity provider it would be the provider's subject claim.
            var identity = new ClaimsIdentity(
                [new Claim(ClaimTypes.NameIdentifier, name), new Claim(ClaimTypes.Name, name)],
                CookieAuthenticationDefaults.AuthenticationScheme);
            await context.SignInAsync(new ClaimsPrincipal(identity));
            return Results.Ok(new SignedInUser(name));
        });

        auth.MapPost("/signout", async (HttpContext context) =>
        {
            await context.SignOutAsync();
            return Results.NoContent();
        });

        auth.MapGet("/me", (ClaimsPrincipal user) => Results.Ok(new SignedInUser(user.FindFirstValue(ClaimTypes.NameIdentifier)!)))
            .RequireAuthorization();

        return endpoints;
    }

    /// <summary>A name is 1 to <see cref="MaxNameLength"/> characters once trimmed, none of them a control character.</summary>
    internal static bool TryNormalize(string? raw, out string name, out string problem)
    {
        name = raw?.Trim() ?? "";
        problem = "";
        if (name.Length == 0)
        {
            problem = "The name must not be empty.";
        }
        else if (name.Length > MaxNameLength)
        {
            problem = $"The name must be at most {MaxNameLength} characters.";
        }
        else if (name.Any(char.IsControl))
        {
            problem = "The name must not contain control characters.";
        }

        return problem.Length == 0;
    }
}

/// <summary>The body of <c>POST /auth/signin</c>.</summary>
/// <param name="Name">The name to sign in as.</param>
internal sealed record SignInRequest(string? Name);

/// <summary>The answer of the sign-in and of <c>GET /auth/me</c>: <c>{"name":"alice"}</c>.</summary>
/// <param name="Name">The signed-in user's id (its name here).</param>
internal sealed record SignedInUser(string Name);
