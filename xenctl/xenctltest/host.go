package xenctltest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/internal/eventq"
)

// ErrNoMemory is returned, wrapped, when a host has too little free memory to
// start or receive a domain.
var ErrNoMemory = errors.New("xenctltest: not enough free memory")

// Host is one simulated hypervisor host. It implements xenctl.Hypervisor,
// xenctl.Migrator, xenctl.Watcher and xenctl.Pauser, and is safe for
// concurrent use.
type Host struct {
	world       *World
	name        string
	info        xenctl.HostInfo
	features    []string
	featuresSet bool
	log         *slog.Logger

	// Guarded by world.mu.
	doms   map[string]*domain // by name
	down   bool               // the daemon does not answer
	off    bool               // the host has no power
	closed bool
	faults []*fault
	calls  []Call
	subs   map[*eventq.Queue[xenctl.Event]]struct{}

	callMu sync.Mutex
}

// domain is a guest on a simulated host.
type domain struct {
	spec       xenctl.Spec
	pending    *xenctl.Spec // a redefinition applied when the domain stops
	state      xenctl.State
	reason     string
	persistent bool
	guest      Guest
	off        chan struct{} // closed when the current run ends
}

// Guest says how a simulated guest behaves.
type Guest struct {
	// IgnoreACPI makes the guest ignore shutdown requests, like a guest
	// without ACPI support or one hung in its kernel.
	IgnoreACPI bool
	// ShutdownDelay is how long the guest takes to shut down when asked.
	ShutdownDelay time.Duration
}

// New returns a simulated host with no domains.
func New(host string, opts ...Option) *Host {
	h := &Host{name: host, info: DefaultHostInfo, doms: map[string]*domain{}, subs: map[*eventq.Queue[xenctl.Event]]struct{}{}}
	for _, o := range opts {
		o(h)
	}
	if h.world == nil {
		h.world = NewWorld()
	}
	if h.log == nil {
		h.log = discardLogger()
	}
	if h.info.Hostname == "" {
		h.info.Hostname = host
	}
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	if _, dup := h.world.hosts[host]; dup {
		panic(fmt.Sprintf("xenctltest: world already has a host named %q", host))
	}
	h.world.hosts[host] = h
	return h
}

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// URI returns the connection URI that other hosts of the world accept as
// MigrateOptions.URI for this host.
func (h *Host) URI() string { return "xenctltest://" + h.name }

// World returns the world the host lives in.
func (h *Host) World() *World { return h.world }

func (d *domain) view() xenctl.Domain {
	return xenctl.Domain{
		Name: d.spec.Name, UUID: d.spec.UUID, State: d.state, Reason: d.reason,
		MemoryKiB: d.spec.MemoryKiB, VCPUs: d.spec.VCPUs, Persistent: d.persistent,
	}
}

// lookup returns the named domain or an error wrapping ErrNoDomain. Call with
// the world locked.
func (h *Host) lookup(name string) (*domain, error) {
	if d, ok := h.doms[name]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("%w: %q on host %s", xenctl.ErrNoDomain, name, h.name)
}

// beginOn is begin followed by lookup, for calls on one domain. On success it
// returns with the world locked; on error, unlocked.
func (h *Host) beginOn(ctx context.Context, m Method, name string) (*call, *domain, error) {
	c, err := h.begin(ctx, m, name)
	if err != nil {
		return c, nil, err
	}
	d, err := h.lookup(name)
	if err != nil {
		h.world.mu.Unlock()
		return c, nil, err
	}
	return c, d, nil
}

// Domains lists the host's domains, sorted by name.
func (h *Host) Domains(ctx context.Context) ([]xenctl.Domain, error) {
	c, err := h.begin(ctx, MethodDomains, "")
	if err != nil {
		return nil, c.end(err)
	}
	defer h.world.mu.Unlock()
	return h.inventory(), c.end(nil)
}

func (h *Host) inventory() []xenctl.Domain {
	out := make([]xenctl.Domain, 0, len(h.doms))
	for _, d := range h.doms {
		out = append(out, d.view())
	}
	slices.SortFunc(out, func(a, b xenctl.Domain) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Domain returns one domain.
func (h *Host) Domain(ctx context.Context, name string) (xenctl.Domain, error) {
	c, d, err := h.beginOn(ctx, MethodDomain, name)
	if err != nil {
		return xenctl.Domain{}, c.end(err)
	}
	defer h.world.mu.Unlock()
	return d.view(), c.end(nil)
}

// Define creates or updates a persistent domain. Redefining a running domain
// changes its size from its next start, as with libvirt.
func (h *Host) Define(ctx context.Context, xml string) (xenctl.Domain, error) {
	spec, perr := xenctl.ParseDomainXML(xml)
	c, err := h.begin(ctx, MethodDefine, spec.Name)
	if err != nil {
		return xenctl.Domain{}, c.end(err)
	}
	defer h.world.mu.Unlock()
	if perr != nil {
		return xenctl.Domain{}, c.end(fmt.Errorf("define on host %s: %w", h.name, perr))
	}
	for _, o := range h.doms {
		if o.spec.UUID == spec.UUID && o.spec.Name != spec.Name {
			return xenctl.Domain{}, c.end(fmt.Errorf("%w: host %s: UUID %s already belongs to domain %q, not %q; undefine it first or use another UUID",
				xenctl.ErrConflict, h.name, spec.UUID, o.spec.Name, spec.Name))
		}
	}
	d, ok := h.doms[spec.Name]
	switch {
	case ok && d.spec.UUID != spec.UUID:
		return xenctl.Domain{}, c.end(fmt.Errorf("%w: host %s: domain %q already exists with UUID %s, not %s",
			xenctl.ErrConflict, h.name, spec.Name, d.spec.UUID, spec.UUID))
	case ok && d.state.Active():
		d.pending = &spec
	case ok:
		d.spec = spec
	default:
		d = &domain{spec: spec, state: xenctl.StateShutoff, reason: "unknown"}
		h.doms[spec.Name] = d
	}
	d.persistent = true
	h.emit(xenctl.EventDefined, d)
	return d.view(), c.end(nil)
}

// Start boots a defined domain; a running one is left alone.
func (h *Host) Start(ctx context.Context, name string) error {
	c, d, err := h.beginOn(ctx, MethodStart, name)
	if err != nil {
		return c.end(err)
	}
	defer h.world.mu.Unlock()
	if d.state.Active() {
		return c.end(nil)
	}
	if free := h.freeKiB(); d.spec.MemoryKiB > free {
		return c.end(fmt.Errorf("%w: start %q on host %s: needs %d KiB, %d KiB free", ErrNoMemory, name, h.name, d.spec.MemoryKiB, free))
	}
	h.run(d, "booted")
	h.emit(xenctl.EventStarted, d)
	return c.end(nil)
}

// run marks d running. Call with the world locked.
func (h *Host) run(d *domain, reason string) {
	d.state, d.reason = xenctl.StateRunning, reason
	d.off = make(chan struct{})
}

// stop ends d's run with the given state and reason; a transient domain
// vanishes. Call with the world locked.
func (h *Host) stop(d *domain, state xenctl.State, reason string) {
	if d.off != nil {
		close(d.off)
		d.off = nil
	}
	d.state, d.reason = state, reason
	if d.pending != nil {
		d.spec, d.pending = *d.pending, nil
	}
	if !d.persistent && state == xenctl.StateShutoff {
		delete(h.doms, d.spec.Name)
	}
}

func (h *Host) freeKiB() uint64 {
	var used uint64
	for _, d := range h.doms {
		if d.state.Active() {
			used += d.spec.MemoryKiB
		}
	}
	if used >= h.info.MemoryKiB {
		return 0
	}
	return h.info.MemoryKiB - used
}

// Shutdown asks the guest to shut down, waits up to grace, then destroys it.
func (h *Host) Shutdown(ctx context.Context, name string, grace time.Duration) (bool, error) {
	c, d, err := h.beginOn(ctx, MethodShutdown, name)
	if err != nil {
		return false, c.end(err)
	}
	switch {
	case d.state == xenctl.StateCrashed:
		h.stop(d, xenctl.StateShutoff, "destroyed")
		h.emit(xenctl.EventStopped, d)
		h.world.mu.Unlock()
		return true, c.end(nil)
	case !d.state.Active():
		h.world.mu.Unlock()
		return false, c.end(nil)
	case !d.guest.IgnoreACPI && d.guest.ShutdownDelay <= 0:
		h.stop(d, xenctl.StateShutoff, "shutdown")
		h.emit(xenctl.EventStopped, d)
		h.world.mu.Unlock()
		return false, c.end(nil)
	}
	d.state, d.reason = xenctl.StateShuttingDown, "user"
	off := d.off
	if !d.guest.IgnoreACPI {
		delay := d.guest.ShutdownDelay
		time.AfterFunc(delay, func() {
			h.world.mu.Lock()
			defer h.world.mu.Unlock()
			if d.off == off && d.state == xenctl.StateShuttingDown {
				h.stop(d, xenctl.StateShutoff, "shutdown")
				h.emit(xenctl.EventStopped, d)
			}
		})
	}
	h.world.mu.Unlock()

	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-off:
		return false, c.end(nil)
	case <-ctx.Done():
		h.world.mu.Lock()
		if d.off == off && d.guest.IgnoreACPI && d.state == xenctl.StateShuttingDown {
			d.state, d.reason = xenctl.StateRunning, "booted"
		}
		h.world.mu.Unlock()
		return false, c.end(unavailable(ctx, "shutdown %q on host %s", name, h.name))
	case <-timer.C:
	}
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	if d.off != off {
		return false, c.end(nil) // stopped just as the grace ran out
	}
	h.stop(d, xenctl.StateShutoff, "destroyed")
	h.emit(xenctl.EventStopped, d)
	return true, c.end(nil)
}

// Destroy stops a domain at once; a stopped one is left alone.
func (h *Host) Destroy(ctx context.Context, name string) error {
	c, d, err := h.beginOn(ctx, MethodDestroy, name)
	if err != nil {
		return c.end(err)
	}
	defer h.world.mu.Unlock()
	if d.state.Active() || d.state == xenctl.StateCrashed {
		h.stop(d, xenctl.StateShutoff, "destroyed")
		h.emit(xenctl.EventStopped, d)
	}
	return c.end(nil)
}

// Undefine removes a domain's definition. A running domain keeps running as a
// transient domain and vanishes when it stops, as with libvirt.
func (h *Host) Undefine(ctx context.Context, name string) error {
	c, d, err := h.beginOn(ctx, MethodUndefine, name)
	if err != nil {
		return c.end(err)
	}
	defer h.world.mu.Unlock()
	d.persistent = false
	d.pending = nil
	if !d.state.Active() {
		delete(h.doms, name)
	}
	h.emit(xenctl.EventUndefined, d)
	return c.end(nil)
}

// HostInfo reports the configured capacity and the memory left free by
// active domains.
func (h *Host) HostInfo(ctx context.Context) (xenctl.HostInfo, error) {
	c, err := h.begin(ctx, MethodHostInfo, "")
	if err != nil {
		return xenctl.HostInfo{}, c.end(err)
	}
	defer h.world.mu.Unlock()
	info := h.info
	info.FreeMemoryKiB = h.freeKiB()
	return info, c.end(nil)
}

// Close ends the connection: later calls fail with ErrUnavailable and event
// channels close. The domains, being guests, keep running.
func (h *Host) Close() error {
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	if !h.closed {
		h.closed = true
		for s := range h.subs {
			s.Close()
		}
	}
	return nil
}

// CrashGuest makes a running guest crash: it goes to StateCrashed and watchers
// see EventCrashed. It returns an error wrapping ErrNoDomain for an unknown
// domain, and does nothing to one that is not active.
func (h *Host) CrashGuest(name string) error {
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	d, err := h.lookup(name)
	if err != nil {
		return err
	}
	if d.state.Active() {
		h.stop(d, xenctl.StateCrashed, "panicked")
		h.emit(xenctl.EventCrashed, d)
	}
	return nil
}

// SetGuest sets how the named guest behaves from now on.
func (h *Host) SetGuest(name string, g Guest) error {
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	d, err := h.lookup(name)
	if err != nil {
		return err
	}
	d.guest = g
	return nil
}

// StopDaemon makes the hypervisor daemon go away: calls fail with
// ErrUnavailable, watchers see EventDisconnected, and the guests keep running.
func (h *Host) StopDaemon() {
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	if !h.down {
		h.emit(xenctl.EventDisconnected, nil)
		h.down = true
	}
}

// StartDaemon brings the daemon back; watchers see EventReconnected with the
// current inventory. A powered-off host stays down until PowerOn.
func (h *Host) StartDaemon() {
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	if h.down && !h.off {
		h.down = false
		h.emit(xenctl.EventReconnected, nil)
	}
}

// RestartDaemon is StopDaemon followed by StartDaemon.
func (h *Host) RestartDaemon() {
	h.StopDaemon()
	h.StartDaemon()
}

// PowerOff cuts the host's power: every guest stops at once (transient ones
// vanish), the daemon goes away and watchers see EventDisconnected.
func (h *Host) PowerOff() {
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	if h.off {
		return
	}
	if !h.down {
		h.emit(xenctl.EventDisconnected, nil)
	}
	h.off, h.down = true, true
	for _, d := range h.doms {
		if d.state.Active() || d.state == xenctl.StateCrashed {
			h.stop(d, xenctl.StateShutoff, "destroyed")
		}
	}
}

// PowerOn boots a powered-off host: its daemon answers again with every guest
// shut off, and watchers see EventReconnected.
func (h *Host) PowerOn() {
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	if h.off {
		h.off, h.down = false, false
		h.emit(xenctl.EventReconnected, nil)
	}
}

// unavailable builds the error for a context that ended during a call.
func unavailable(ctx context.Context, format string, args ...any) error {
	return fmt.Errorf("%s: %w (%w)", fmt.Sprintf(format, args...), xenctl.ErrUnavailable, context.Cause(ctx))
}

var (
	_ xenctl.Hypervisor = (*Host)(nil)
	_ xenctl.Migrator   = (*Host)(nil)
	_ xenctl.Watcher    = (*Host)(nil)
)
