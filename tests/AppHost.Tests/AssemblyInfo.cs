// Each test class starts a whole app (Redis, N nodes, the balancer). On 2 cores two AppHosts at once roughly triple
// start-up, so classes run one after another.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
