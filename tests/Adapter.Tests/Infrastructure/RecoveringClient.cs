using System.Globalization;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using SignalR.RedisStreams.Client;

namespace SignalR.RedisStreams.Tests.Infrastructure;

/// <summary>
/// A .NET client that uses connection-state recovery through <see cref="RecoverySession"/>. It records the numbers of
/// the "Send" messages it gets (texts <c>m&lt;n&gt;</c>) in arrival order, and every outcome the server reports. It
/// does not reconnect by itself: <see cref="ReconnectAsync"/> opens a new connection, to any node, with the same
/// session, as a client behind a balancer does after its server died.
/// </summary>
public sealed class RecoveringClient : IAsyncDisposable
{
    private readonly string _user;
    private readonly List<int> _numbers = [];
    private readonly List<RecoveryOutcome> _outcomes = [];
    private readonly Lock _lock = new();
    private HubConnection? _connection;

    private readonly bool _messagePack;

    private RecoveringClient(string user, bool messagePack)
    {
        _user = user;
        _messagePack = messagePack;
        Session.OutcomeReceived += outcome =>
        {
            lock (_lock)
            {
                _outcomes.Add(outcome);
            }
        };
    }

    /// <summary>The session this client carries across connections.</summary>
    public RecoverySession Session { get; } = new();

    /// <summary>The current connection.</summary>
    public HubConnection Connection => _connection ?? throw new InvalidOperationException("Not connected.");

    /// <summary>The numbers received so far, in order.</summary>
    public IReadOnlyList<int> Numbers
    {
        get
        {
            lock (_lock)
            {
                return [.. _numbers];
            }
        }
    }

    /// <summary>What the server said at each connection start.</summary>
    public IReadOnlyList<RecoveryOutcome> Outcomes
    {
        get
        {
            lock (_lock)
            {
                return [.. _outcomes];
            }
        }
    }

    /// <summary>Connects as <paramref name="user"/> to <paramref name="hubUrl"/> and waits for the session's start.</summary>
    public static async Task<RecoveringClient> ConnectAsync(string hubUrl, string user, HubProtocolKind protocol)
    {
        var client = new RecoveringClient(user, protocol == HubProtocolKind.MessagePack);
        await client.ReconnectAsync(hubUrl);
        return client;
    }

    /// <summary>Drops the current connection (if any) and connects to <paramref name="hubUrl"/> with the session (as
    /// <paramref name="asUser"/> if given, else as the client's user); returns what the server said of it.</summary>
    public async Task<RecoveryOutcome> ReconnectAsync(string hubUrl, string? asUser = null)
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
        var before = Outcomes.Count;
        var url = $"{hubUrl}?user={Uri.EscapeDataString(asUser ?? _user)}";
        var builder = new HubConnectionBuilder().WithUrl(url);
        if (_messagePack)
        {
            builder.AddMessagePackProtocol();
        }
        Session.Configure(builder);
        _connection = builder.Build();
        Session.Attach(_connection);
        Session.On<string>(_connection, TestClient.SendMethod, text =>
        {
            lock (_lock)
            {
                _numbers.Add(int.Parse(text.AsSpan(1), CultureInfo.InvariantCulture));
            }
        });
        await _connection.StartAsync();
        await Eventually.TrueAsync(() => Outcomes.Count > before, "the server's session message");
        return Outcomes[^1];
    }

    /// <summary>Waits until <paramref name="count"/> numbers arrived.</summary>
    public Task WaitForCountAsync(int count, TimeSpan? timeout = null)
        => Eventually.TrueAsync(() => Numbers.Count >= count, $"{count} messages (have {Numbers.Count})", timeout);

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
    }
}
