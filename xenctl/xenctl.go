package xenctl

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors that callers branch on. Implementations wrap them with %w and add the
// domain and host to the message.
var (
	// ErrNoDomain: the hypervisor answered and has no domain of that name.
	ErrNoDomain = errors.New("xenctl: no such domain")
	// ErrUnavailable: the hypervisor did not answer (down, restarting, hung, or
	// the context ended first). It never means that a domain stopped.
	ErrUnavailable = errors.New("xenctl: hypervisor unavailable")
	// ErrInvalidDomain: the domain definition was rejected before it reached the
	// hypervisor (malformed XML, missing UUID or name).
	ErrInvalidDomain = errors.New("xenctl: invalid domain definition")
	// ErrConflict: a different domain already holds that name or UUID.
	ErrConflict = errors.New("xenctl: domain conflict")
	// ErrNotSupported: the hypervisor or its driver cannot do this.
	ErrNotSupported = errors.New("xenctl: not supported")
	// ErrCPUIncompatible: the destination's CPU cannot run the domain's CPU model.
	ErrCPUIncompatible = errors.New("xenctl: incompatible CPU")
)

// State is a domain's run state, mapped from the hypervisor's own states.
type State int

// Domain states. The zero value is StateUnknown.
const (
	StateUnknown      State = iota
	StateShutoff            // defined, not running
	StateRunning            // running (or blocked on I/O, which is still running)
	StatePaused             // paused by an operator or by migration
	StateShuttingDown       // guest asked to shut down, not yet off
	StateCrashed            // the guest crashed and was not restarted
	StatePMSuspended        // suspended by guest power management
)

var stateNames = [...]string{"unknown", "shutoff", "running", "paused", "shutting-down", "crashed", "pmsuspended"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Active reports whether a domain in state s holds its memory and may write to
// its disks: anything except shut off and crashed. The single-runner rule counts
// active domains.
func (s State) Active() bool {
	switch s {
	case StateRunning, StatePaused, StateShuttingDown, StatePMSuspended:
		return true
	}
	return false
}

// Domain is one guest as the hypervisor reports it.
type Domain struct {
	Name   string
	UUID   string // canonical lowercase 8-4-4-4-12 form
	State  State
	Reason string // the hypervisor's reason for the state, e.g. "destroyed", "crashed", "migrated"
	// MemoryKiB and VCPUs are the domain's configured size.
	MemoryKiB uint64
	VCPUs     int
	// Persistent is false for transient domains, which vanish when they stop.
	Persistent bool
}

// HostInfo describes the host a Hypervisor controls.
type HostInfo struct {
	Hostname      string
	Hypervisor    string // driver name, e.g. "QEMU", "Xen", "Test"
	MemoryKiB     uint64 // total memory usable by guests
	FreeMemoryKiB uint64
	CPUs          int    // logical CPUs
	CPUModel      string // e.g. "Skylake-Server-IBRS"
	CPUVendor     string // e.g. "Intel"
	// CPUXML is the host CPU description in libvirt's <cpu> form, for
	// compatibility checks before migration. May be empty.
	CPUXML string
}

// Hypervisor controls the domains of one host.
type Hypervisor interface {
	// Domains lists every guest domain (never dom0 or another control domain).
	Domains(ctx context.Context) ([]Domain, error)
	// Domain returns one domain, or an error wrapping ErrNoDomain.
	Domain(ctx context.Context, name string) (Domain, error)
	// Define creates or updates a persistent domain from its XML definition.
	Define(ctx context.Context, xml string) (Domain, error)
	// Start boots a defined domain. Starting a running domain is not an error.
	Start(ctx context.Context, name string) error
	// Shutdown asks the guest to shut down and waits up to grace for it to stop;
	// if it has not stopped by then, it destroys it. Forced reports whether it
	// had to.
	Shutdown(ctx context.Context, name string, grace time.Duration) (forced bool, err error)
	// Destroy stops a domain at once, like pulling its power. Destroying a
	// stopped domain is not an error.
	Destroy(ctx context.Context, name string) error
	// Undefine removes a stopped domain's definition.
	Undefine(ctx context.Context, name string) error
	// HostInfo reports the host's capacity and CPU.
	HostInfo(ctx context.Context) (HostInfo, error)
	// Close releases the connection.
	Close() error
}

// MigrateOptions tune a live migration.
type MigrateOptions struct {
	// URI is the destination hypervisor's connection URI, e.g.
	// "qemu+tcp://host-b/system".
	URI string
	// Address is where the migration stream goes (libvirt's migrate URI), e.g.
	// "tcp://198.18.0.2". Empty lets the hypervisor choose.
	Address string
	// BandwidthMiBs limits the stream, in MiB/s; zero is unlimited.
	BandwidthMiBs uint64
	// MaxDowntime is the longest pause allowed at switch-over; zero keeps the default.
	MaxDowntime time.Duration
	// Persist defines the domain on the destination and undefines it on the source.
	Persist bool
	// Unsafe skips the hypervisor's disk-cache safety check.
	Unsafe bool
}

// MigrationProgress is reported while a migration runs.
type MigrationProgress struct {
	DataTotal     uint64
	DataProcessed uint64
	DataRemaining uint64
	Elapsed       time.Duration
}

// Migrator is implemented by hypervisors that can live-migrate a running domain
// to a peer. Migrate returns once the domain runs on the destination, or an
// error, after which it still runs here. Ending ctx cancels the migration.
type Migrator interface {
	Migrate(ctx context.Context, name string, opts MigrateOptions, progress func(MigrationProgress)) error
}

// EventKind says what happened to a domain.
type EventKind int

// Lifecycle event kinds.
const (
	EventDefined EventKind = iota + 1
	EventUndefined
	EventStarted
	EventStopped // shut down, destroyed or migrated away; see Domain.Reason
	EventCrashed
	EventSuspended
	EventResumed
	// EventReconnected follows a lost and regained hypervisor connection. It
	// carries a fresh inventory in Event.Inventory; events in between may be lost.
	EventReconnected
	// EventDisconnected says the connection to the hypervisor was lost. It says
	// nothing about the domains, which may well still run.
	EventDisconnected
)

var eventNames = map[EventKind]string{
	EventDefined: "defined", EventUndefined: "undefined", EventStarted: "started",
	EventStopped: "stopped", EventCrashed: "crashed", EventSuspended: "suspended",
	EventResumed: "resumed", EventReconnected: "reconnected", EventDisconnected: "disconnected",
}

func (k EventKind) String() string {
	if s, ok := eventNames[k]; ok {
		return s
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is one lifecycle change.
type Event struct {
	Kind      EventKind
	Domain    Domain   // the domain after the change; zero for connection events
	Inventory []Domain // all domains, with EventReconnected
	Time      time.Time
}

// Watcher is implemented by hypervisors that deliver lifecycle events. The
// channel is closed when ctx ends or the hypervisor is closed.
type Watcher interface {
	Events(ctx context.Context) (<-chan Event, error)
}

// Pauser is implemented by hypervisors that can freeze a running domain in
// memory and let it continue later. xenha's isolation response pauses VMs when
// a host loses its lease, so that a short loss of quorum costs a pause, not a
// reboot; a paused domain executes nothing and writes nothing.
type Pauser interface {
	// Suspend pauses a running domain. Suspending a paused domain is not an error.
	Suspend(ctx context.Context, name string) error
	// Resume continues a paused domain. Resuming a running domain is not an error.
	Resume(ctx context.Context, name string) error
}

// Executing reports whether a domain in state s executes guest code: running or
// shutting down. The single-runner rule allows a VM to execute on one host only.
func (s State) Executing() bool {
	return s == StateRunning || s == StateShuttingDown
}
