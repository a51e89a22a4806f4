// Package libvirt implements xenctl.Hypervisor, xenctl.Migrator,
// xenctl.Watcher and xenctl.Pauser on libvirt, for Xen through the libxl driver (xen:///system),
// KVM or TCG through the qemu driver (qemu:///system, qemu+unix, qemu+ssh, ...)
// and libvirt's in-process test driver (test:///default, test:///path.xml).
// It is the only package in xenha that uses cgo.
//
// # Bounded calls
//
// A libvirt call blocks in C until the daemon answers, and a hung libvirtd
// never does. Every call therefore runs on its own goroutine, holding its own
// reference to the connection, and the method returns when its context ends
// with an error wrapping xenctl.ErrUnavailable. The abandoned call finishes or
// fails by itself; keepalive probes (see WithKeepAlive) make a dead daemon's
// connection fail instead of hanging forever. A hung or restarting libvirtd is
// reported as unavailable, never as a stopped domain.
//
// # Events and reconnection
//
// The package runs libvirt's default event loop on one goroutine per process
// (libvirt allows one). Lifecycle events are queued in Go and delivered, in
// order and without loss, to every channel from Events. When the connection
// breaks (close callback, keepalive timeout, or a call that finds it dead), the
// Hypervisor reports EventDisconnected, reconnects with backoff, and reports
// EventReconnected with a fresh inventory. A libvirtd restart leaves QEMU and
// Xen guests running, and the inventory says so.
//
// # Migration
//
// Migrate compares the domain's CPU with what the destination hypervisor can
// provide (virConnectCompareHypervisorCPU, falling back to
// virConnectCompareCPU) and refuses with xenctl.ErrCPUIncompatible, naming the
// missing features, before any memory is copied. It then runs
// virDomainMigrate3 with the client managing both ends, polls job statistics
// for progress, and aborts the job if the context ends.
//
// Pure-Go parts (state mapping, definition checks, error classification) live
// in state.go and definition.go, so that most logic is unit-tested without a
// daemon.
package libvirt
