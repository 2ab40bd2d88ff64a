using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;

namespace SignalR.RedisStreams.Internal;

/// <summary>
/// The client results of one hub on this node, and how each one ends (there is no timeout of their own, as in
/// SignalR: the caller's token bounds them). Two tables:
/// <list type="bullet">
/// <item><b>pending</b>: invocations this node waits for, on a connection here or on another node. Each ends with the
/// client's answer; <c>HubException("Invocation canceled by the server.")</c> when the caller's token fires;
/// <c>IOException("Connection '{id}' disconnected.")</c> when its connection leaves this node;
/// <c>HubException("Connection disconnected.")</c> when its connection left another node, or that node is gone
/// (silent for <c>HeartbeatTimeout</c>, or said goodbye).</item>
/// <item><b>proxied</b>: invocations another node waits for on a connection here; the client's answer, or its
/// disconnection, is sent back to that node.</item>
/// </list>
/// Error messages and types are those of SignalR's own lifetime managers.
/// </summary>
internal sealed class ClientResultsManager(string nodeId, IHubProtocolResolver protocols)
{
    private readonly ConcurrentDictionary<string, PendingInvocation> _pending = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ProxiedInvocation> _proxied = new(StringComparer.Ordinal);
    private long _lastId;

    /// <summary>An id unique across nodes: this node's id and a counter.</summary>
    public string NewInvocationId() => nodeId + "." + Interlocked.Increment(ref _lastId).ToString(CultureInfo.InvariantCulture);

    /// <summary>Starts waiting for <paramref name="connectionId"/>'s answer (held by <paramref name="node"/>, empty for
    /// this node). Cancelling <paramref name="cancellationToken"/> fails it as SignalR does.</summary>
    public PendingInvocation<T> Add<T>(string invocationId, string connectionId, string node, CancellationToken cancellationToken)
    {
        var pending = new PendingInvocation<T>(connectionId, node);
        _pending[invocationId] = pending;
        if (cancellationToken.CanBeCanceled)
        {
            pending.WatchCancellation(() => Fail(invocationId, new HubException("Invocation canceled by the server.")), cancellationToken);
        }
        return pending;
    }

    /// <summary>Forgets an invocation that could not be sent.</summary>
    public void Remove(string invocationId)
    {
        if (_pending.TryRemove(invocationId, out var pending))
        {
            pending.Abandon();
        }
    }

    /// <summary>Completes a pending invocation with its connection's answer; false when none is pending under that id.
    /// Throws <see cref="InvalidOperationException"/>, leaving the invocation pending, when another connection answers.</summary>
    public bool TryComplete(string connectionId, CompletionMessage completion)
    {
        var invocationId = completion.InvocationId ?? "";
        if (!_pending.TryGetValue(invocationId, out var pending))
        {
            return false;
        }
        if (pending.ConnectionId != connectionId)
        {
            throw WrongConnection(connectionId, invocationId);
        }
        if (_pending.TryRemove(invocationId, out _))
        {
            pending.Complete(completion);
        }
        return true;
    }

    public bool TryGetReturnType(string invocationId, [NotNullWhen(true)] out Type? type)
    {
        if (_pending.TryGetValue(invocationId, out var pending))
        {
            type = pending.ResultType;
            return true;
        }
        if (_proxied.ContainsKey(invocationId))
        {
            type = typeof(RawResult); // kept raw, forwarded to the waiting node, typed there
            return true;
        }
        type = null;
        return false;
    }

    /// <summary>Another node (<paramref name="origin"/>) waits for <paramref name="connectionId"/>'s answer.</summary>
    public void AddProxied(string invocationId, string origin, string connectionId) => _proxied[invocationId] = new ProxiedInvocation(origin, connectionId);

    /// <summary>The node waiting for this answer, when it is a proxied invocation; throws
    /// <see cref="InvalidOperationException"/>, leaving it pending, when another connection answers.</summary>
    public bool TryTakeProxied(string connectionId, string invocationId, [NotNullWhen(true)] out string? origin)
    {
        origin = null;
        if (!_proxied.TryGetValue(invocationId, out var proxied))
        {
            return false;
        }
        if (proxied.ConnectionId != connectionId)
        {
            throw WrongConnection(connectionId, invocationId);
        }
        if (!_proxied.TryRemove(invocationId, out _))
        {
            return false;
        }
        origin = proxied.Origin;
        return true;
    }

    /// <summary>A connection of this node left: what this node waited for on it fails; returns the proxied invocations
    /// on it, whose nodes must be told.</summary>
    public List<(string InvocationId, string Origin)>? ConnectionLeft(string connectionId)
    {
        foreach (var (id, pending) in _pending)
        {
            if (pending.ConnectionId == connectionId && pending.Node.Length == 0)
            {
                Fail(id, new IOException($"Connection '{connectionId}' disconnected."));
            }
        }
        List<(string, string)>? orphans = null;
        foreach (var (id, proxied) in _proxied)
        {
            if (proxied.ConnectionId == connectionId && _proxied.TryRemove(id, out _))
            {
                (orphans ??= []).Add((id, proxied.Origin));
            }
        }
        return orphans;
    }

    /// <summary>A node is gone: what this node waited for on its connections fails; what it waited for here is dropped.</summary>
    public void NodeGone(string node)
    {
        foreach (var (id, pending) in _pending)
        {
            if (pending.Node == node)
            {
                Fail(id, new HubException("Connection disconnected."));
            }
        }
        foreach (var (id, proxied) in _proxied)
        {
            if (proxied.Origin == node)
            {
                _proxied.TryRemove(id, out _);
            }
        }
    }

    /// <summary>Another node answered for a connection it holds: the client's completion (encoded with
    /// <paramref name="protocolName"/>), or that the connection was not found or disconnected. False when nothing waits
    /// for <paramref name="invocationId"/>.</summary>
    public bool CompleteFromRemote(string invocationId, ResultStatus status, string protocolName, ReadOnlyMemory<byte> completion)
    {
        if (!_pending.TryRemove(invocationId, out var pending))
        {
            return false;
        }
        switch (status)
        {
            case ResultStatus.ConnectionNotFound:
                pending.Fail(new IOException($"Connection '{pending.ConnectionId}' does not exist."));
                return true;
            case ResultStatus.ConnectionDisconnected:
                pending.Fail(new HubException("Connection disconnected."));
                return true;
            default:
                break;
        }
        try
        {
            var protocol = protocols.GetProtocol(protocolName, null)
                ?? throw new InvalidDataException($"The result was encoded with protocol '{protocolName}', which this server does not have.");
            var data = new ReadOnlySequence<byte>(completion);
            if (protocol.TryParseMessage(ref data, new ResultBinder(pending.ResultType), out var message) && message is CompletionMessage parsed)
            {
                pending.Complete(parsed);
            }
            else
            {
                pending.Fail(new InvalidDataException("The client's result could not be read."));
            }
        }
#pragma warning disable CA1031 // whatever the protocol throws is the invocation's failure, not the reader's
        catch (Exception ex)
#pragma warning restore CA1031
        {
            pending.Fail(ex);
        }
        return true;
    }

    private void Fail(string invocationId, Exception exception)
    {
        if (_pending.TryRemove(invocationId, out var pending))
        {
            pending.Fail(exception);
        }
    }

    private static InvalidOperationException WrongConnection(string connectionId, string invocationId)
        => new($"Connection ID '{connectionId}' is not valid for invocation ID '{invocationId}'.");

    private sealed record ProxiedInvocation(string Origin, string ConnectionId);

    private sealed class ResultBinder(Type resultType) : IInvocationBinder
    {
        public Type GetReturnType(string invocationId) => resultType;

        public IReadOnlyList<Type> GetParameterTypes(string methodName) => throw new InvalidDataException("A result cannot carry an invocation.");

        public Type GetStreamItemType(string streamId) => throw new InvalidDataException("A result cannot carry a stream item.");
    }
}
