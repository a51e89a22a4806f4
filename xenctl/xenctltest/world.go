package xenctltest

import (
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/xenha/xenha/xenctl"
)

// World is a set of simulated hosts that can see each other: domains migrate
// between its hosts, and it answers where a domain is active. One mutex guards
// the whole world, so every observation is a consistent cut across hosts.
type World struct {
	mu    sync.Mutex
	hosts map[string]*Host
}

// NewWorld returns an empty world. Add hosts with New(name, WithWorld(w)).
func NewWorld() *World {
	return &World{hosts: map[string]*Host{}}
}

// Host returns the host of that name, or nil.
func (w *World) Host(name string) *Host {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hosts[name]
}

// Hosts returns the names of the world's hosts, sorted.
func (w *World) Hosts() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.hosts))
	for n := range w.hosts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Executing returns, sorted, the names of the domains that execute guest
// code on any host (see Running).
func (w *World) Executing() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, h := range w.hosts {
		for _, d := range h.doms {
			if d.state.Executing() && !slices.Contains(out, d.spec.Name) {
				out = append(out, d.spec.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Running returns, sorted, the hosts on which a domain with this name or UUID
// executes guest code (xenctl.State.Executing: running or shutting down),
// whether or not the host's daemon answers. More than one host means the
// single-runner rule is broken. A paused domain executes nothing and is not
// counted; Active counts it.
func (w *World) Running(nameOrUUID string) []string {
	return w.hostsWhere(nameOrUUID, xenctl.State.Executing)
}

// Active returns, sorted, the hosts on which a domain with this name or UUID
// holds its memory (xenctl.State.Active: running, paused, shutting down or
// PM-suspended).
func (w *World) Active(nameOrUUID string) []string {
	return w.hostsWhere(nameOrUUID, xenctl.State.Active)
}

func (w *World) hostsWhere(nameOrUUID string, pred func(xenctl.State) bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for hn, h := range w.hosts {
		for _, d := range h.doms {
			if (d.spec.Name == nameOrUUID || d.spec.UUID == nameOrUUID) && pred(d.state) {
				out = append(out, hn)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// DoubleRunners returns the names of domains executing on more than one host,
// sorted; empty while the single-runner rule holds.
func (w *World) DoubleRunners() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	count := map[string]int{}
	for _, h := range w.hosts {
		for _, d := range h.doms {
			if d.state.Executing() {
				count[d.spec.UUID]++
			}
		}
	}
	var out []string
	for _, h := range w.hosts {
		for _, d := range h.doms {
			if count[d.spec.UUID] > 1 && !slices.Contains(out, d.spec.Name) {
				out = append(out, d.spec.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Option configures a Host.
type Option func(*Host)

// WithWorld places the host in w, so that it sees the other hosts there. Without
// it, the host lives in a world of its own.
func WithWorld(w *World) Option { return func(h *Host) { h.world = w } }

// WithHostInfo sets the host's capacity and CPU. FreeMemoryKiB is computed
// from the running domains and ignored here; Hostname defaults to the host name.
func WithHostInfo(info xenctl.HostInfo) Option {
	return func(h *Host) { h.info = info }
}

// WithCPUFeatures sets the CPU features the host offers; a domain that
// requires a feature not listed cannot migrate here. Without this option the
// host offers every feature.
func WithCPUFeatures(features ...string) Option {
	return func(h *Host) { h.features = slices.Clone(features); h.featuresSet = true }
}

// WithLogger logs the fake's calls and injected faults.
func WithLogger(l *slog.Logger) Option { return func(h *Host) { h.log = l } }

// DefaultHostInfo is the capacity of a host created without WithHostInfo: a
// mid-size two-socket server.
var DefaultHostInfo = xenctl.HostInfo{
	Hypervisor: "Fake",
	MemoryKiB:  64 << 20,
	CPUs:       16,
	CPUModel:   "Skylake-Server-IBRS",
	CPUVendor:  "Intel",
	CPUXML:     "<cpu><arch>x86_64</arch><model>Skylake-Server-IBRS</model><vendor>Intel</vendor></cpu>",
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
