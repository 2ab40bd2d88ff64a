using Microsoft.AspNetCore.SignalR;

namespace Benchmarks.Infrastructure;

/// <summary>The hub every node maps at <c>/hub</c>. The scenarios send through <c>IHubContext&lt;BenchHub&gt;</c>.</summary>
public sealed class BenchHub : Hub
{
}
