// Package fence makes sure a host is off before xenha recovers its VMs elsewhere.
//
// A [Fencer] fences one host and returns a [Proof] only when the host is
// verifiably off: a power method polls the BMC until it reports "off", a poison
// pill waits until the victim must have read it and killed itself, a watchdog
// proof says when the victim's lease provably expired. A fencer that cannot tell
// returns an error; a silent BMC is never a dead host.
//
// Fencers are configured locally on each host. Hosts are named by their cluster
// ID; each implementation maps the ID to its own target (a BMC address, a
// fence-agent option set, an SBD slot) from local configuration, so credentials
// never enter the replicated log.
//
// [Chain] tries ordered levels with per-level timeouts and escalates on failure or
// silence, recording every [Attempt]; on total failure it returns a
// [*ChainError] listing them. [All] combines devices that must all act (a
// host with two power feeds) into one level. Optional capabilities are
// separate interfaces: [StatusReader] and [Unfencer].
//
// Implementations live in sub-packages (ipmi, agent, watchdog, sbd, libvirt); a
// scriptable fake and the conformance suite every implementation passes live in
// fence/fencetest.
package fence
