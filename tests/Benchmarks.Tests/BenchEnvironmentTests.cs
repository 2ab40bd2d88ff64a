using Benchmarks.Scenarios;

namespace Benchmarks.Tests;

/// <summary>The environment variables that narrow a benchmark run for an A/B (<c>BENCH_CELLS</c>,
/// <c>BENCH_SWEEP_CELLS</c>, <c>BENCH_SWEEP_NODES</c>): what they keep, and a clear error naming the variable for a
/// value they cannot take. The parsing is tested on strings; the process's environment is left alone.</summary>
public sealed class BenchEnvironmentTests
{
    private static readonly Cell[] SweepCells = [Cell.Direct, Cell.LocalGroups, Cell.Groups, Cell.DirectOneNode];

    [Fact]
    public void Cells_are_kept_in_the_scenarios_order_and_an_unknown_or_foreign_one_is_named()
    {
        Assert.Equal(SweepCells, CellsScenario.Only("BENCH_SWEEP_CELLS", null, SweepCells));
        Assert.Equal([Cell.Direct, Cell.DirectOneNode], CellsScenario.Only("BENCH_SWEEP_CELLS", " directonenode, Direct ", SweepCells));

        var unknown = Assert.Throws<ArgumentException>(() => CellsScenario.Only("BENCH_SWEEP_CELLS", "Direct,Nope", SweepCells));
        Assert.StartsWith("BENCH_SWEEP_CELLS: unknown cell 'Nope'", unknown.Message, StringComparison.Ordinal);
        // A cell of the other scenario is not one of the sweep's.
        var foreign = Assert.Throws<ArgumentException>(() => CellsScenario.Only("BENCH_SWEEP_CELLS", "Broadcast64", SweepCells));
        Assert.Contains("(cells: Direct, LocalGroups, Groups, DirectOneNode)", foreign.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Node_counts_replace_the_sweeps_and_keep_its_addressed_clients_when_the_fewest_stays()
    {
        Assert.Same(SweepSettings.Default, SweepSettings.WithNodes(SweepSettings.Default, " "));

        var narrowed = SweepSettings.WithNodes(SweepSettings.Default, "2, 6");
        Assert.Equal([2, 6], narrowed.NodeCounts);
        Assert.Equal(SweepSettings.Default.Addressed, narrowed.Addressed);
        Assert.Equal(SweepSettings.Default.Run, narrowed.Run);

        foreach (var bad in new[] { "2,1", "2,six", "-3" })
        {
            var error = Assert.Throws<ArgumentException>(() => SweepSettings.WithNodes(SweepSettings.Default, bad));
            Assert.StartsWith("BENCH_SWEEP_NODES: ", error.Message, StringComparison.Ordinal);
        }
    }
}
