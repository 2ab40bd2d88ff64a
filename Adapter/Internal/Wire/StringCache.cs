using System.Text;

namespace SignalR.RedisStreams.Internal;

/// <summary>The few strings every entry repeats (node ids, hub and protocol names), kept once and found again by their
/// UTF-8 bytes, so that reading an entry does not allocate them. Bounded; used by one reader thread.</summary>
internal sealed class StringCache(int capacity = 64)
{
    /// <summary>UTF-8 that throws on invalid bytes instead of replacing them (the wire format's strings).</summary>
    public static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly (byte[] Bytes, string Value)[] _entries = new (byte[], string)[capacity];
    private int _count;
    private int _next;

    /// <summary>The string of <paramref name="bytes"/>; throws <see cref="DecoderFallbackException"/> for invalid UTF-8.</summary>
    public string Get(ReadOnlySpan<byte> bytes)
    {
        for (var i = 0; i < _count; i++)
        {
            if (bytes.SequenceEqual(_entries[i].Bytes))
            {
                return _entries[i].Value;
            }
        }
        var value = StrictUtf8.GetString(bytes);
        if (bytes.Length <= 256)
        {
            _entries[_next] = (bytes.ToArray(), value);
            _next = (_next + 1) % _entries.Length;
            _count = Math.Min(_count + 1, _entries.Length);
        }
        return value;
    }
}
