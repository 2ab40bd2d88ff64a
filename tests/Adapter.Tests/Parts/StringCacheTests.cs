using System.Text;
using SignalR.RedisStreams.Internal;

namespace SignalR.RedisStreams.Tests.Parts;

/// <summary>The reader's cache of repeated strings.</summary>
public sealed class StringCacheTests
{
    [Fact]
    public void The_same_bytes_give_the_same_string_instance()
    {
        var cache = new StringCache();

        var first = cache.Get("node-a"u8);
        var second = cache.Get(Encoding.UTF8.GetBytes("node-a"));

        Assert.Equal("node-a", first);
        Assert.Same(first, second);
        Assert.NotSame(first, cache.Get("node-b"u8));
    }

    [Fact]
    public void A_full_cache_still_answers_correctly()
    {
        var cache = new StringCache(capacity: 2);

        var values = Enumerable.Range(0, 10).Select(i => cache.Get(Encoding.UTF8.GetBytes($"n{i}"))).ToArray();

        Assert.Equal(Enumerable.Range(0, 10).Select(i => $"n{i}"), values);
        Assert.Equal("n0", cache.Get("n0"u8));
    }

    [Fact]
    public void Invalid_utf8_is_refused()
    {
        Assert.Throws<DecoderFallbackException>(() => new StringCache().Get([0xC3, 0x28]));
    }
}
