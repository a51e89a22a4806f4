// Package pool is the pool's failover logic as a pure model: hosts with
// leases and epochs, VMs and their placement, volumes, fence proofs and
// incidents, and Plan, which reads a State at an instant and returns the
// actions that follow from it (fence this host, start that VM there, stop,
// migrate, wait until). It has no goroutines, no clock, no I/O and no Raft:
// the caller passes the time, carries the actions out and commits what they
// changed through the transitions in apply.go, which refuse what would break
// a safety rule even if a planner asked for it.
//
// Placement is filter → score → pick. Every constraint is a small named unit
// (constraints.go): a filter says why a host cannot take a VM, a scorer ranks
// the hosts that can. Rules between VMs and hosts (node affinity with
// per-host priorities, strict or preferred; positive and negative affinity
// between VMs) are checked for contradictions by ValidateRules.
//
// The safety rules Plan keeps:
//   - A VM leaves a host only after a fence proof for the host's epoch has
//     been committed, and then only when the proof allows it: a verified
//     power-off at once, a self-fence (watchdog) or an operator's word only
//     after the host has been silent past ReassignAfter, and an unverified
//     result never.
//   - A VM taken off a healthy host (released) is placed again only once that
//     host reported it stopped after the release, or that host was fenced or
//     left and its lease was waited out.
//   - Silence is counted from the last renewal applied, but never from before
//     the leader's own start: leadership is not ownership, leases are.
//   - A VM is assigned to one host at a time; the transitions refuse a second
//     assignment that the rules above do not allow.
//
// The scenarios in testdata/scenarios drive the model through a simulated
// pool (hosts that crash, hang, are partitioned or fenced) and are run by
// one datadriven test; -rewrite rewrites their expected output.
package pool
