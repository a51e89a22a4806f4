// Package xenctltest provides a deterministic fake hypervisor and the
// conformance suite that every xenctl.Hypervisor implementation must pass, in
// the way net/http/httptest and testing/fstest serve their packages.
//
// # The fake
//
// [New] returns a [Host]: one simulated hypervisor host that implements
// xenctl.Hypervisor, xenctl.Migrator, xenctl.Watcher and xenctl.Pauser. Hosts created with the
// same [World] ([WithWorld]) see each other: a domain migrates between them, and
// [World.Running] reports every host where a domain executes, so a test can
// observe the one thing xenha must never allow, a VM running on two hosts
// ([World.Active] also counts paused domains, which hold memory but execute
// nothing).
//
// A test drives the fake the way a data centre misbehaves:
//
//   - [Host.Inject] makes calls fail, hang until their context ends, or run
//     slowly, for one method or domain, N times or always;
//   - [Host.StopDaemon], [Host.StartDaemon] and [Host.RestartDaemon] model a
//     libvirtd that goes away while its domains keep running: calls fail with
//     xenctl.ErrUnavailable, watchers see EventDisconnected and then
//     EventReconnected with a fresh inventory;
//   - [Host.PowerOff] and [Host.PowerOn] model the whole host losing power;
//   - [Host.CrashGuest] crashes a guest, and [Host.SetGuest] makes a guest slow
//     to shut down or deaf to ACPI;
//   - [Host.Calls] returns the call log, for asserting what the caller did.
//
// The fake parses domain XML with xenctl.ParseDomainXML, so malformed
// definitions fail as they would against libvirt. [DomainXML] builds a minimal
// valid definition.
//
// # The conformance suite
//
// [Run] checks an implementation against the xenctl contract: idempotent
// define, start and destroy; conflicts; graceful shutdown with a deadline;
// ErrNoDomain for unknown names; cancelled contexts; and lifecycle events when
// the implementation is a xenctl.Watcher.
package xenctltest
