using System.Buffers;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;

namespace SignalR.RedisStreams.Client;

/// <summary>
/// Wraps the connection's protocol: for a method registered through <see cref="RecoverySession"/>, the position the
/// server put in the message's <c>rs-position</c> header becomes one more, last argument, which the session's
/// handler takes off again. Everything else passes through unchanged.
/// </summary>
internal sealed class PositionReadingProtocol(IHubProtocol inner, RecoverySession session) : IHubProtocol
{
    private const string PositionHeader = "rs-position";

    public string Name => inner.Name;

    public int Version => inner.Version;

    public TransferFormat TransferFormat => inner.TransferFormat;

    public bool IsVersionSupported(int version) => inner.IsVersionSupported(version);

    public ReadOnlyMemory<byte> GetMessageBytes(HubMessage message) => inner.GetMessageBytes(message);

    public void WriteMessage(HubMessage message, IBufferWriter<byte> output) => inner.WriteMessage(message, output);

    public bool TryParseMessage(ref ReadOnlySequence<byte> input, IInvocationBinder binder, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out HubMessage? message)
    {
        if (!inner.TryParseMessage(ref input, new Binder(binder, session), out message))
        {
            return false;
        }
        if (message is InvocationMessage invocation && session.TakesPosition(invocation.Target))
        {
            string? position = null;
            invocation.Headers?.TryGetValue(PositionHeader, out position);
            message = new InvocationMessage(invocation.InvocationId, invocation.Target, [.. invocation.Arguments, position], invocation.StreamIds)
            {
                Headers = invocation.Headers,
            };
        }
        return true;
    }

    /// <summary>Tells the inner protocol the types of the arguments the server sent: the session's handlers take
    /// one more (the position) than that.</summary>
    private sealed class Binder(IInvocationBinder inner, RecoverySession session) : IInvocationBinder
    {
        public IReadOnlyList<Type> GetParameterTypes(string methodName)
        {
            var types = inner.GetParameterTypes(methodName);
            return session.TakesPosition(methodName) && types.Count > 0 ? [.. types.Take(types.Count - 1)] : types;
        }

        public Type GetReturnType(string invocationId) => inner.GetReturnType(invocationId);

        public Type GetStreamItemType(string streamId) => inner.GetStreamItemType(streamId);

        public string? GetTarget(ReadOnlySpan<byte> utf8Bytes) => inner.GetTarget(utf8Bytes);
    }
}
