using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.Http.Connections.Client;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.DependencyInjection;

namespace SignalR.RedisStreams.Client;

/// <summary>What the server said of a connection's session when the connection started.</summary>
public enum RecoveryStatus
{
    /// <summary>A new session (the first connection, or the client had none).</summary>
    New,

    /// <summary>The session was recovered: groups restored and every missed message replayed, before live ones.</summary>
    Recovered,

    /// <summary>The session could not be recovered (see <see cref="RecoveryOutcome.Reason"/>); a new one started, and
    /// messages sent while the client was away are lost to it.</summary>
    NotRecovered,
}

/// <summary>The server's word on a connection's session.</summary>
/// <param name="Status">New, recovered or not recovered.</param>
/// <param name="Replayed">How many missed messages were replayed (recovered only).</param>
/// <param name="Reason">Why the session was not recovered; empty otherwise.</param>
public sealed record RecoveryOutcome(RecoveryStatus Status, int Replayed, string Reason);

/// <summary>
/// The client side of the backplane's connection-state recovery. It asks the server for a session, keeps the session's
/// token and the position of the last message received, and presents both when the connection starts again, to the
/// same server or, through a balancer, another one. The server puts each message's position in a message header;
/// handlers registered through <see cref="On(HubConnection, string, Type[], Func{object?[], Task})"/> advance the
/// position once they have run, so that a message counts as received when its handler ran.
/// <code>
/// var session = new RecoverySession();
/// var builder = new HubConnectionBuilder().WithUrl(url).WithAutomaticReconnect(); // any protocol
/// session.Configure(builder); // after the protocol is chosen
/// var connection = builder.Build();
/// session.Attach(connection);
/// session.On&lt;string&gt;(connection, "message", text => ...);
/// </code>
/// One session serves one logical client; a new <see cref="HubConnection"/> for the same client (e.g. built by hand
/// after the old one gave up) is configured and attached the same way and recovers the session.
/// </summary>
public sealed class RecoverySession
{
    /// <summary>The request header that carries the session token (or <c>new</c>).</summary>
    public const string SessionHeader = "X-RedisStreams-Session";

    /// <summary>The request header that carries the position of the last message received.</summary>
    public const string PositionHeader = "X-RedisStreams-Position";

    private const string ControlMethod = "RedisStreams.Session";
    private const string PositionPrefix = "~rs:";
    private const int PositionLength = 44;

    private readonly Lock _lock = new();
    private string? _token;
    private string? _position;
    private RecoveryOutcome? _lastOutcome;
    private string? _sinceStart;
    private readonly HashSet<string> _positioned = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The session's token once the server gave one (a secret: whoever has it and the user's identity can
    /// recover the session).</summary>
    public string? SessionId
    {
        get
        {
            lock (_lock)
            {
                return _token;
            }
        }
    }

    /// <summary>The position of the last message received (opaque text), or of the session's start.</summary>
    public string? Position
    {
        get
        {
            lock (_lock)
            {
                return _position;
            }
        }
    }

    /// <summary>What the server said when the connection last started.</summary>
    public RecoveryOutcome? LastOutcome
    {
        get
        {
            lock (_lock)
            {
                return _lastOutcome;
            }
        }
    }

    /// <summary>Raised each time the server reports on the session (every start and restart of the connection).</summary>
    public event Action<RecoveryOutcome>? OutcomeReceived;

    /// <summary>Configures a connection builder for recovery: WebSockets, the session and position in the headers of
    /// every WebSocket request (read when the request is made, so that automatic reconnects present the latest
    /// position), and the protocol wrapped so that message positions reach the handlers registered through this
    /// session. Call it after <c>WithUrl</c> and after choosing the protocol.</summary>
    public void Configure(IHubConnectionBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.Configure<HttpConnectionOptions>(ConfigureConnection);
        var descriptor = builder.Services.LastOrDefault(d => d.ServiceType == typeof(IHubProtocol))
            ?? throw new InvalidOperationException("The builder has no hub protocol: call Configure after WithUrl.");
        builder.Services.Remove(descriptor);
        builder.Services.AddSingleton<IHubProtocol>(services => new PositionReadingProtocol(Resolve(descriptor, services), this));
    }

    private static IHubProtocol Resolve(ServiceDescriptor descriptor, IServiceProvider services)
        => (IHubProtocol)(descriptor.ImplementationInstance
            ?? descriptor.ImplementationFactory?.Invoke(services)
            ?? ActivatorUtilities.CreateInstance(services, descriptor.ImplementationType!));

    private void ConfigureConnection(HttpConnectionOptions options)
    {
        options.Transports = HttpTransportType.WebSockets;
        var previous = options.WebSocketConfiguration;
        options.WebSocketConfiguration = socket =>
        {
            previous?.Invoke(socket);
            string token;
            string position;
            lock (_lock)
            {
                token = _token ?? "new";
                position = _position ?? "";
                _sinceStart = null; // a connection starts: what it receives is counted afresh
            }
            socket.SetRequestHeader(SessionHeader, token);
            socket.SetRequestHeader(PositionHeader, position);
        };
    }

    /// <summary>Listens to the server's session messages on <paramref name="connection"/>.</summary>
    public void Attach(HubConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        connection.On<string, string, string, int, string>(ControlMethod, OnControl);
    }

    /// <summary>Registers a handler whose arguments are <paramref name="parameterTypes"/>; the message's position is
    /// remembered once the handler has run.</summary>
    public IDisposable On(HubConnection connection, string methodName, Type[] parameterTypes, Func<object?[], Task> handler)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(methodName);
        ArgumentNullException.ThrowIfNull(parameterTypes);
        ArgumentNullException.ThrowIfNull(handler);
        lock (_lock)
        {
            _positioned.Add(methodName);
        }
        // The protocol wrapper appends the position (from the message's header) as one more argument.
        return connection.On(methodName, [.. parameterTypes, typeof(string)], async args =>
        {
            var position = args[^1] as string;
            await handler(args[..^1]);
            Advance(position);
        });
    }

    internal bool TakesPosition(string methodName)
    {
        lock (_lock)
        {
            return _positioned.Contains(methodName);
        }
    }

    /// <summary>Registers a handler of one argument (see <see cref="On(HubConnection, string, Type[], Func{object?[], Task})"/>).</summary>
    public IDisposable On<T1>(HubConnection connection, string methodName, Action<T1> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return On(connection, methodName, [typeof(T1)], args =>
        {
            handler((T1)args[0]!);
            return Task.CompletedTask;
        });
    }

    /// <summary>Registers a handler of two arguments.</summary>
    public IDisposable On<T1, T2>(HubConnection connection, string methodName, Action<T1, T2> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return On(connection, methodName, [typeof(T1), typeof(T2)], args =>
        {
            handler((T1)args[0]!, (T2)args[1]!);
            return Task.CompletedTask;
        });
    }

    /// <summary>Registers a handler of three arguments.</summary>
    public IDisposable On<T1, T2, T3>(HubConnection connection, string methodName, Action<T1, T2, T3> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return On(connection, methodName, [typeof(T1), typeof(T2), typeof(T3)], args =>
        {
            handler((T1)args[0]!, (T2)args[1]!, (T3)args[2]!);
            return Task.CompletedTask;
        });
    }

    private void OnControl(string status, string token, string position, int replayed, string reason)
    {
        var outcome = new RecoveryOutcome(
            status switch
            {
                "recovered" => RecoveryStatus.Recovered,
                "not-recovered" => RecoveryStatus.NotRecovered,
                _ => RecoveryStatus.New,
            },
            replayed,
            reason ?? "");
        lock (_lock)
        {
            _token = token;
            // Recovered: the replay continued the old position. New or not recovered: the old position belonged to a
            // session that is gone, so only what this connection got counts. Either way the highest wins, whatever
            // order this message and the first live messages arrived in.
            _position = outcome.Status == RecoveryStatus.Recovered ? Max(position, _position) : Max(position, _sinceStart);
            _lastOutcome = outcome;
        }
        OutcomeReceived?.Invoke(outcome);
    }

    private void Advance(string? position)
    {
        if (position is not { Length: PositionLength } || !position.StartsWith(PositionPrefix, StringComparison.Ordinal))
        {
            return;
        }
        lock (_lock)
        {
            _position = Max(position, _position);
            _sinceStart = Max(position, _sinceStart);
        }
    }

    private static bool IsAfter(string? a, string? b) => a is not null && (b is null || string.CompareOrdinal(a, b) > 0);

    private static string? Max(string? a, string? b) => IsAfter(a, b) ? a : b;
}
