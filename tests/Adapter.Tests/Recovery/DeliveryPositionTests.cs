using Microsoft.AspNetCore.SignalR.Protocol;
using SignalR.RedisStreams.Internal;

namespace SignalR.RedisStreams.Tests.Recovery;

/// <summary>The wire form of a delivery position and the patch that writes it into a serialized message.</summary>
public sealed class DeliveryPositionTests
{
    private static readonly DeliveryPosition Sample = new(new StreamId(1_764_000_000_123, 42), 7);

    [Fact]
    public void The_text_form_is_fixed_width_orders_like_the_position_and_parses_back()
    {
        var text = Sample.ToString();
        Assert.Equal("~rs:001764000000123-00000000000000000042:007", text);
        Assert.Equal(DeliveryPosition.TextLength, text.Length);
        Assert.True(DeliveryPosition.TryParse(text, out var parsed));
        Assert.Equal(Sample, parsed);

        var later = new DeliveryPosition(new StreamId(1_764_000_000_123, 100), 0);
        Assert.True(later > Sample);
        Assert.True(string.CompareOrdinal(later.ToString(), text) > 0);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("~rs:001764000000123-00000000000000000042:07")]
    [InlineData("~rs:00176400000012x-00000000000000000042:007")]
    [InlineData("xx:001764000000123-00000000000000000042:007")]
    [InlineData("~rs:001764000000123+00000000000000000042:007")]
    public void Anything_else_is_refused(string? text) => Assert.False(DeliveryPosition.TryParse(text, out _));

    [Theory]
    [InlineData("json")]
    [InlineData("messagepack")]
    public void The_patch_writes_the_position_into_the_header_even_when_an_argument_looks_like_the_placeholder(string protocolName)
    {
        IHubProtocol protocol = protocolName == "json" ? new JsonHubProtocol() : new MessagePackHubProtocol();
        var message = new InvocationMessage("Send", [DeliveryPosition.Placeholder, "text"]) { Headers = ConnectionRecovery.PlaceholderHeaders };
        var bytes = protocol.GetMessageBytes(message);

        var patched = Sample.Patch(bytes.Span);

        Assert.NotNull(patched);
        var input = new System.Buffers.ReadOnlySequence<byte>(patched);
        Assert.True(protocol.TryParseMessage(ref input, new Binder(), out var parsed));
        var invocation = Assert.IsType<InvocationMessage>(parsed);
        Assert.Equal(Sample.ToString(), invocation.Headers![ConnectionRecovery.PositionMessageHeader]);
        Assert.Equal([DeliveryPosition.Placeholder, "text"], invocation.Arguments);
    }

    [Fact]
    public void Bytes_without_the_placeholder_are_not_patched()
        => Assert.Null(Sample.Patch(new JsonHubProtocol().GetMessageBytes(new InvocationMessage("Send", ["x"])).Span));

    private sealed class Binder : Microsoft.AspNetCore.SignalR.IInvocationBinder
    {
        public IReadOnlyList<Type> GetParameterTypes(string methodName) => [typeof(string), typeof(string)];

        public Type GetReturnType(string invocationId) => typeof(object);

        public Type GetStreamItemType(string streamId) => typeof(object);
    }
}
