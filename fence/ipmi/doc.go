// Package ipmi fences hosts through their BMCs over the IPMI LAN protocol,
// in pure Go (github.com/bougou/go-ipmi): IPMI 1.5 ("lan") and IPMI 2.0 /
// RMCP+ ("lanplus") with a chosen list of cipher suites.
//
// Fence opens a session, reads the chassis status (an already-off host is
// proved off at once), sends chassis power-down, and then polls the chassis
// status until the BMC reports the power off, within a bound. Only that
// answer makes a proof: a BMC that accepted the command but keeps reporting
// "on", or that stops answering, gives an error wrapping fence.ErrNotOff or
// fence.ErrUnreachable.
//
// Each host's BMC is configured locally in a [Target]. Passwords come from a
// file named in the target or from a [PasswordFunc]; they are read when
// needed, never logged, and never appear in errors or proofs.
package ipmi
