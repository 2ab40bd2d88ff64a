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

/// <summary>One decoded stream entry. Which members are set depends on <see cref="Kind"/> (see <see cref="StreamEntryFormat"/>).
/// Every send makes two (the sender's, and the one each reading node decodes), so the members only the node-addressed
/// kinds use (GroupCommand, Ack, Invoke, Result) live in an object of their own, made only for those kinds.</summary>
internal sealed class StreamEntry
{
    private NodeAddressed? _addressed;

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
    public string TargetNode { get => _addressed?.TargetNode ?? ""; init => Addressed.TargetNode = value; }
    public string ConnectionId { get => _addressed?.ConnectionId ?? ""; init => Addressed.ConnectionId = value; }
    public string Group { get => _addressed?.Group ?? ""; init => Addressed.Group = value; }
    public GroupAction Action { get => _addressed?.Action ?? default; init => Addressed.Action = value; }
    public long AckId { get => _addressed?.AckId ?? 0; init => Addressed.AckId = value; }
    public string InvocationId { get => _addressed?.InvocationId ?? ""; init => Addressed.InvocationId = value; }
    public ResultStatus Status { get => _addressed?.Status ?? default; init => Addressed.Status = value; }
    public string Protocol { get => _addressed?.Protocol ?? ""; init => Addressed.Protocol = value; }
    public ReadOnlyMemory<byte> Payload { get => _addressed?.Payload ?? default; init => Addressed.Payload = value; }

    private NodeAddressed Addressed => _addressed ??= new NodeAddressed();

    private sealed class NodeAddressed
    {
        public string TargetNode = "";
        public string ConnectionId = "";
        public string Group = "";
        public GroupAction Action;
        public long AckId;
        public string InvocationId = "";
        public ResultStatus Status;
        public string Protocol = "";
        public ReadOnlyMemory<byte> Payload;
    }
}
