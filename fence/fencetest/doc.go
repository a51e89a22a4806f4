// Package fencetest helps test code that fences hosts, and code that
// implements fencing.
//
// [Fake] is a scriptable fence.Fencer (also a fence.StatusReader and
// fence.Unfencer) that models each host's power: per host it can succeed,
// fail, hang until the context ends, fail N times then succeed, answer slowly,
// be unreachable ("BMC silent"), or power the host off without being able to
// confirm it. An OnFence hook lets a cluster test crash the simulated host at
// the moment it is fenced, and the call log records what was asked and when.
//
// [Run] is the conformance suite every fence method passes, in the manner of
// testing/fstest.TestFS: give it a constructor for a fresh [Subject] — the
// fencer, a host that is on, and an independent way to see that the host is
// off — and it checks the contract documented on fence.Fencer.
package fencetest
