package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/xenha/xenha/xenctl"
)

// role is the xenctl.Hypervisor a gateway host gives xenha. In the seeds'
// set-up the gateway domains run on both hosts all the time, started by Xen
// itself, so that the passive host can take over at once; what moves is
// only the right to be on the network. So xenha protects one VM, the active
// role, whose "domain" lives here: starting it makes this host the active
// one, and the host agent then unblocks the gateways' MACs on this host
// alone and announces their addresses. Destroying or pausing it (the
// isolation response, when the host loses its lease) gives the role up, and
// the agent blocks the network first.
//
// It implements xenctl.Pauser, so that a short loss of quorum costs a
// blocked network for a moment, not a failover.
type role struct {
	host string // for messages
	info xenctl.HostInfo

	mu      sync.Mutex
	domains map[string]*xenctl.Domain
	changed func(name string, active bool) // optional, for logs
}

func newRole(host string) *role {
	return &role{
		host:    host,
		info:    xenctl.HostInfo{Hostname: host, Hypervisor: "gateway-role", MemoryKiB: 1 << 20, FreeMemoryKiB: 1 << 20, CPUs: 4},
		domains: map[string]*xenctl.Domain{},
	}
}

// Active reports whether this host holds the role named name.
func (r *role) Active(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.domains[name]
	return d != nil && d.State.Executing()
}

// alive refuses calls whose context has ended, as a real hypervisor call
// would fail, and before acting.
func (r *role) alive(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("role %s on %s: %w: %v", op, r.host, xenctl.ErrUnavailable, err)
	}
	return nil
}

// with runs fn on the role named name under the lock, once the context is
// found alive and the role defined.
func (r *role) with(ctx context.Context, op, name string, fn func(*xenctl.Domain) error) error {
	if err := r.alive(ctx, op); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.domains[name]
	if d == nil {
		return fmt.Errorf("role %q on %s: %w", name, r.host, xenctl.ErrNoDomain)
	}
	return fn(d)
}

func (r *role) set(d *xenctl.Domain, s xenctl.State, reason string) {
	was := d.State.Executing()
	d.State, d.Reason = s, reason
	if r.changed != nil && was != s.Executing() {
		r.changed(d.Name, s.Executing())
	}
}

// Domains lists the roles defined here.
func (r *role) Domains(ctx context.Context) ([]xenctl.Domain, error) {
	if err := r.alive(ctx, "domains"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]xenctl.Domain, 0, len(r.domains))
	for _, d := range r.domains {
		out = append(out, *d)
	}
	return out, nil
}

// Domain returns one role.
func (r *role) Domain(ctx context.Context, name string) (xenctl.Domain, error) {
	var out xenctl.Domain
	err := r.with(ctx, "domain", name, func(d *xenctl.Domain) error {
		out = *d
		return nil
	})
	return out, err
}

// Define records a role from its definition (any valid domain XML).
func (r *role) Define(ctx context.Context, xml string) (xenctl.Domain, error) {
	if err := r.alive(ctx, "define"); err != nil {
		return xenctl.Domain{}, err
	}
	spec, err := xenctl.ParseDomainXML(xml)
	if err != nil {
		return xenctl.Domain{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.domains {
		if (o.Name == spec.Name) != (o.UUID == spec.UUID) {
			return xenctl.Domain{}, fmt.Errorf("role %q (%s) on %s: %w with role %q (%s)", spec.Name, spec.UUID, r.host, xenctl.ErrConflict, o.Name, o.UUID)
		}
	}
	if d := r.domains[spec.Name]; d != nil {
		d.MemoryKiB, d.VCPUs = spec.MemoryKiB, max(spec.VCPUs, 1)
		return *d, nil
	}
	d := &xenctl.Domain{Name: spec.Name, UUID: spec.UUID, State: xenctl.StateShutoff, MemoryKiB: spec.MemoryKiB, VCPUs: max(spec.VCPUs, 1), Persistent: true}
	r.domains[spec.Name] = d
	return *d, nil
}

// Start takes the role.
func (r *role) Start(ctx context.Context, name string) error {
	return r.with(ctx, "start", name, func(d *xenctl.Domain) error {
		r.set(d, xenctl.StateRunning, "booted")
		return nil
	})
}

// Shutdown gives the role up (there is no guest to wait for).
func (r *role) Shutdown(ctx context.Context, name string, grace time.Duration) (bool, error) {
	return false, r.stop(ctx, name, "shutdown")
}

// Destroy gives the role up.
func (r *role) Destroy(ctx context.Context, name string) error {
	return r.stop(ctx, name, "destroyed")
}

func (r *role) stop(ctx context.Context, name, reason string) error {
	return r.with(ctx, reason, name, func(d *xenctl.Domain) error {
		r.set(d, xenctl.StateShutoff, reason)
		return nil
	})
}

// Suspend holds the role without acting on it.
func (r *role) Suspend(ctx context.Context, name string) error {
	return r.with(ctx, "suspend", name, func(d *xenctl.Domain) error {
		switch d.State {
		case xenctl.StateRunning:
			r.set(d, xenctl.StatePaused, "user")
		case xenctl.StatePaused:
		default:
			return fmt.Errorf("suspend role %q on %s: it is %s: %w", name, r.host, d.State, xenctl.ErrConflict)
		}
		return nil
	})
}

// Resume continues a held role.
func (r *role) Resume(ctx context.Context, name string) error {
	return r.with(ctx, "resume", name, func(d *xenctl.Domain) error {
		if d.State == xenctl.StatePaused {
			r.set(d, xenctl.StateRunning, "unpaused")
		}
		return nil
	})
}

// Undefine forgets a stopped role.
func (r *role) Undefine(ctx context.Context, name string) error {
	return r.with(ctx, "undefine", name, func(d *xenctl.Domain) error {
		if d.State.Active() {
			return fmt.Errorf("role %q on %s is %s: destroy it first: %w", name, r.host, d.State, xenctl.ErrConflict)
		}
		delete(r.domains, name)
		return nil
	})
}

// HostInfo reports a small fixed capacity: the role needs next to nothing.
func (r *role) HostInfo(ctx context.Context) (xenctl.HostInfo, error) {
	if err := r.alive(ctx, "host info"); err != nil {
		return xenctl.HostInfo{}, err
	}
	return r.info, nil
}

// Close does nothing: the role lives in memory.
func (r *role) Close() error { return nil }

var (
	_ xenctl.Hypervisor = (*role)(nil)
	_ xenctl.Pauser     = (*role)(nil)
)
