using SignalR.RedisStreams.Internal;

namespace SignalR.RedisStreams.Tests.Parts;

/// <summary>The stream's keys, built once (the fixed ones) or kept per node (inboxes).</summary>
public sealed class RedisStreamsKeysTests
{
    [Fact]
    public void Every_key_starts_with_the_streams_hash_tag()
    {
        var keys = new RedisStreamsKeys("app:", "chat");
        var tag = keys.StreamName;

        Assert.StartsWith("{", tag, StringComparison.Ordinal);
        Assert.Equal(tag, (string?)keys.Stream);
        Assert.Equal(tag + ":epoch", (string?)keys.Epoch);
        Assert.Equal(tag + ":clock", (string?)keys.Clock);
        Assert.Equal(tag + ":seq", (string?)keys.Sequences);
        Assert.Equal(tag + ":seq-total", (string?)keys.Totals);
        Assert.Equal(tag + ":connections", (string?)keys.Connections);
        Assert.Equal(tag + ":node:n1", (string?)keys.Inbox("n1"));
        Assert.Equal(tag + ":node:n1:seq", (string?)keys.InboxSequences("n1"));
        Assert.Equal(tag + ":session:t", (string?)keys.Session("t"));
        Assert.All(new[] { (string)keys.Epoch!, (string)keys.Inbox("n1")! }, k => Assert.Equal(StreamShards.SlotOfKey(tag), StreamShards.SlotOfKey(k)));
    }

    [Fact]
    public void Inbox_keys_stay_right_past_the_nodes_kept()
    {
        // Node ids change with every start; past the ones kept, the keys are built each time, the same.
        var keys = new RedisStreamsKeys("app:", "chat");

        for (var round = 0; round < 2; round++)
        {
            for (var n = 0; n < 1500; n++)
            {
                Assert.Equal($"{keys.StreamName}:node:node-{n}", (string?)keys.Inbox($"node-{n}"));
                Assert.Equal($"{keys.StreamName}:node:node-{n}:seq", (string?)keys.InboxSequences($"node-{n}"));
            }
        }
    }
}
