// Package xenctl is xenha's view of a hypervisor: the domains on one host, their
// states, and the few operations high availability needs (define, start, graceful
// shutdown, destroy, undefine, host facts).
//
// The package is pure Go. The libvirt implementation lives in xenctl/libvirt, the
// only package in xenha that uses cgo; a deterministic fake and the conformance
// suite that every implementation must pass live in xenctl/xenctltest.
//
// # Contract
//
// Every method takes a context and returns when it ends. An implementation that
// cannot reach its hypervisor (libvirtd restarting, a hung daemon) returns an error
// wrapping [ErrUnavailable]; callers MUST NOT read that as "the domain stopped".
// Only a successful call that reports a domain shut off or absent says so.
//
// Domains are addressed by name. [Hypervisor.Define] is idempotent for the same
// UUID and name; defining a different UUID under a taken name fails with
// [ErrConflict]. [Hypervisor.Start] on a running domain, and [Hypervisor.Destroy]
// on a stopped one, succeed without effect, so callers can reconcile blindly.
//
// Optional capabilities are separate interfaces found by type assertion:
// [Migrator] for live migration and [Watcher] for lifecycle events.
//
// # Domain definitions
//
// [ParseDomainXML] validates a libvirt domain definition in pure Go and
// extracts its [Spec] (identity, size, MACs, required CPU model and features).
// Implementations use it to reject bad definitions with [ErrInvalidDomain]
// before they reach a hypervisor; xenha uses it to learn a VM's size and
// network identities. Every HA domain needs a fixed UUID: it is the VM's
// identity on every host it may run on.
package xenctl
