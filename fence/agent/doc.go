// Package agent fences hosts with ClusterLabs fence agents (fence_ipmilan,
// fence_idrac, fence_virsh, fence_sbd, ... from the fence-agents package),
// speaking their standard protocol: options as key=value lines on stdin.
//
// Fence runs the agent with action=off and then action=status, and returns
// a proof only when status exits 2 ("off"); exit 0 means on and 1 an error,
// as the fence-agents API defines. Unfence runs action=on. Every run has a
// timeout; the agent runs in its own process group and the whole group is
// killed on overrun, so a hung agent (or the ipmitool it started) cannot
// outlive the attempt.
//
// Options are local configuration ([Target]); a password can come from a
// file and is passed on stdin only, never on the command line, and is
// masked in errors and proofs. [Fencer.Validate] checks the options against
// each agent's own metadata (action=metadata) at start-up, so a misspelt
// option fails then rather than during a failover.
package agent
