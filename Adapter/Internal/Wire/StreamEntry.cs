using Microsoft.AspNetCore.SignalR;

namespace SignalR.RedisStreams.Internal;

/// <summary>What an entry of the stream asks the nodes to do. Values are part of the wire format: never renumber.</summary>
internal enum EntryKind : byte
{
    All = 1,
    Connections = 2,
    Groups = 3,
    Users = 4,
    GroupCommand = 5,
    Ack = 6,
    Invoke = 7,
    Result = 8,
    Heartbeat = 9,
    Goodbye = 10,
}

internal enum GroupAction : byte
{
    Add = 1,
    Remove = 2,
}

internal enum ResultStatus : byte
{
    Completed = 0,
    ConnectionNotFound = 1,
    ConnectionDisconnected = 2,
}

/// <summary>One decoded stream entry. Which members are set depends on <see cref="Kind"/> (see <see cref="StreamEntryFormat"/>).</summary>
internal sealed class StreamEntry
{
    public required EntryKind Kind { get; init; }
    public required string Node { get; init; }
    public long Sequence { get; set; }

    /// <summary>The sender's sequence restarts at this entry (Redis lost its earlier entries): no gap before it for a
    /// reader that did not know the sender.</summary>
    public bool SequenceRestarts { get; set; }
    public string Hub { get; init; } = "";

    /// <summary>Where the reader found this packet (set only with connection-state recovery on).</summary>
    public DeliveryPosition Position { get; set; }
    public string? TraceParent { get; set; }

    /// <summary>Connection ids, group names or user ids this entry targets (All: none).</summary>
    public IReadOnlyList<string> Targets { get; init; } = [];
    public IReadOnlyList<string> Excluded { get; init; } = [];
    public IReadOnlyList<SerializedMessage> Messages { get; init; } = [];

    /// <summary>Node-addressed kinds (GroupCommand, Ack, Invoke, Result): the node that must act.</summary>
    public string TargetNode { get; init; } = "";
    public string ConnectionId { get; init; } = "";
    public string Group { get; init; } = "";
    public GroupAction Action { get; init; }
    public long AckId { get; init; }
    public string InvocationId { get; init; } = "";
    public ResultStatus Status { get; init; }
    public string Protocol { get; init; } = "";
    public ReadOnlyMemory<byte> Payload { get; init; }
}
