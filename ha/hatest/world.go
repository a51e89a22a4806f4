package hatest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/fence/watchdog"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/netguard/netguardtest"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/storagetest"
	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// World is a Cluster whose members run on simulated hardware: each host has
// a fake hypervisor (all in one xenctltest.World, so a VM running on two
// hosts is observable), a fake network guard, a view of one shared fake
// storage, and one fake fencing device that can power any host off. Fencing
// a host in the world kills it: its hypervisor loses power and its member
// crashes, as a real power-off would.
type World struct {
	*Cluster
	Hyper  *xenctltest.World
	Fencer *fencetest.Fake
	Store  *storagetest.Store

	t      testing.TB
	mu     sync.Mutex
	hosts  map[string]*WorldHost
	killed map[string]bool
	// power records each host's power changes, for the invariant that a
	// verified power-off proof was true.
	power map[string][]powerChange
	wo    worldOptions
	// The simulated watchdogs: the running boot's stop function and the
	// resets per host.
	wdStop   map[string]func()
	wdResets map[string]int
	wdBoots  int
	wdClosed bool
	wdWG     sync.WaitGroup
}

// powerChange is one power-off (on false) or power-on of a host.
type powerChange struct {
	at time.Time
	on bool
}

// WorldHost is one simulated host's hardware.
type WorldHost struct {
	ID    string
	Hyper *xenctltest.Host // nil on a witness
	// Guard is the host's packet filter; a power-off replaces it with an
	// empty one.
	Guard *netguardtest.Guard
}

type worldOptions struct {
	witnesses map[int]bool
	memKiB    map[int]uint64
	cpus      map[int]int
	fence     fencetest.Behavior
	profile   *ha.Config
	configure func(i int, cfg *ha.Config)
	cluster   []Option
	watchdog  time.Duration
	proves    fence.ProofKind
}

// WorldOption adjusts NewWorld.
type WorldOption func(*worldOptions)

// Witness makes member i a witness: it votes and runs no VMs.
func Witness(i int) WorldOption { return func(o *worldOptions) { o.witnesses[i] = true } }

// HostSize sets member i's capacity.
func HostSize(i int, memKiB uint64, cpus int) WorldOption {
	return func(o *worldOptions) { o.memKiB[i], o.cpus[i] = memKiB, cpus }
}

// FenceBehavior sets how the fencing device answers for every host
// (default: succeed after 50 ms, like a fast BMC).
func FenceBehavior(b fencetest.Behavior) WorldOption { return func(o *worldOptions) { o.fence = b } }

// FenceProof sets the kind of proof the world's fencing device gives
// (default fence.ProofVerifiedOff: it really powers the host off, and reads
// it back). Tests of the slower proofs' waits set ProofUnverified or
// ProofSelfFence.
func FenceProof(kind fence.ProofKind) WorldOption { return func(o *worldOptions) { o.proves = kind } }

// Profile sets the members' base configuration (default SharedCPU()).
func Profile(cfg ha.Config) WorldOption { return func(o *worldOptions) { o.profile = &cfg } }

// Configure adjusts member i's configuration after the world wired it.
func Configure(fn func(i int, cfg *ha.Config)) WorldOption {
	return func(o *worldOptions) { o.configure = fn }
}

// ClusterOptions passes options to the underlying New.
func ClusterOptions(opts ...Option) WorldOption {
	return func(o *worldOptions) { o.cluster = append(o.cluster, opts...) }
}

// Watchdogs gives every VM host a hardware watchdog with the given timeout.
// The member feeds its lease (ha.Config.Watchdog) to a real fence/watchdog
// Keeper, which writes its keep-alives to a file standing in for the
// device. The simulated device arms at the first keep-alive, as if it were
// opened at the first lease, and resets the host (a power-off, as Kill) once
// timeout has passed since the last one. Each boot gets a new Keeper.
func Watchdogs(timeout time.Duration) WorldOption {
	return func(o *worldOptions) { o.watchdog = timeout }
}

// SharedCPU is ha.FastLAN with failure detection relaxed for test machines
// whose CPUs are shared and slowed by the race detector: a member starved
// for half a second must not be fenced. Raft timings stay FastLAN's.
func SharedCPU() ha.Config {
	c := ha.FastLAN()
	c.WarnTime = 600 * time.Millisecond
	c.DeadTime = 1200 * time.Millisecond
	c.Lease = 2 * time.Second
	c.ReassignAfter = 2200 * time.Millisecond
	c.IsolationLead = 400 * time.Millisecond
	c.InitDead = 3 * time.Second
	return c
}

// FakeKind is the storage.Volume.Kind served by the world's shared store.
const FakeKind = "fake"

// NewWorld starts n members on simulated hosts h1..hN and waits until each
// host is online with its capacity registered.
func NewWorld(t testing.TB, n int, opts ...WorldOption) *World {
	t.Helper()
	wo := worldOptions{witnesses: map[int]bool{}, memKiB: map[int]uint64{}, cpus: map[int]int{},
		fence: fencetest.Succeed().WithLatency(50 * time.Millisecond), proves: fence.ProofVerifiedOff}
	for _, o := range opts {
		o(&wo)
	}
	w := &World{
		t:      t,
		wdStop: map[string]func(){}, wdResets: map[string]int{},
		Hyper:  xenctltest.NewWorld(),
		Fencer: fencetest.New(fencetest.Method("fake-bmc"), fencetest.Proves(wo.proves)),
		Store:  storagetest.NewStore(),
		hosts:  map[string]*WorldHost{},
		killed: map[string]bool{},
		power:  map[string][]powerChange{},
		wo:     wo,
	}
	for i := range n {
		w.Fencer.AddHost(fmt.Sprintf("h%d", i+1), wo.fence)
	}
	w.Fencer.SetOnFence(w.powerOff) // the proof comes only once the power is off
	profile := SharedCPU()
	if wo.profile != nil {
		profile = *wo.profile
	}
	copts := append([]Option{WithInsecure(), WithConfig(w.configure), WithProfile(profile)}, wo.cluster...)
	w.Cluster = New(t, n, copts...)
	// Registered after New's cleanup, so it runs first: members shutting
	// down stop feeding, which is no reason to reset them.
	t.Cleanup(w.stopWatchdogs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WaitHosts(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// configure wires member i's plug-ins; on a restart it reuses the hardware.
func (w *World) configure(i int, cfg *ha.Config) {
	id := fmt.Sprintf("h%d", i+1)
	w.mu.Lock()
	h := w.hosts[id]
	if h == nil {
		h = &WorldHost{ID: id, Guard: netguardtest.New()}
		if !w.wo.witnesses[i] {
			info := xenctltest.DefaultHostInfo
			if m := w.wo.memKiB[i]; m > 0 {
				info.MemoryKiB = m
			}
			if c := w.wo.cpus[i]; c > 0 {
				info.CPUs = c
			}
			h.Hyper = xenctltest.New(id, xenctltest.WithWorld(w.Hyper), xenctltest.WithHostInfo(info))
		}
		w.hosts[id] = h
	}
	hw := *h
	w.mu.Unlock()
	if w.wo.witnesses[i] {
		cfg.Role = ha.RoleWitness
	} else {
		cfg.Hypervisor = hw.Hyper
		cfg.Guard = hw.Guard
		cfg.Storage = map[string]storage.Backend{FakeKind: w.Store.Backend(id)}
	}
	cfg.Fencer = w.Fencer
	if w.wo.watchdog > 0 && !w.wo.witnesses[i] {
		cfg.Watchdog = w.bootWatchdog(id)
	}
	if w.wo.configure != nil {
		w.wo.configure(i, cfg)
	}
}

// bootWatchdog starts host id's watchdog for one boot and returns its
// Keeper; the boot's watchdog stops when the host powers off.
func (w *World) bootWatchdog(id string) *watchdog.Keeper {
	w.mu.Lock()
	w.wdBoots++
	path := filepath.Join(w.t.TempDir(), fmt.Sprintf("%s-boot%d.watchdog", id, w.wdBoots))
	w.mu.Unlock()
	timeout := w.wo.watchdog
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		w.t.Fatalf("hatest: watchdog device for %s: %v", id, err)
	}
	k, err := watchdog.Open(path, watchdog.WithTimeout(timeout), watchdog.WithPetInterval(timeout/5))
	if err != nil {
		w.t.Fatalf("hatest: watchdog for %s: %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	if stop := w.wdStop[id]; stop != nil {
		stop()
	}
	w.wdStop[id] = cancel
	w.mu.Unlock()
	w.wdWG.Add(2)
	go func() { defer w.wdWG.Done(); _ = k.Run(ctx) }()
	go func() {
		defer w.wdWG.Done()
		defer k.Close()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n, last := k.Pets()
			if n == 0 || time.Since(last) < timeout {
				continue
			}
			w.mu.Lock()
			fire := ctx.Err() == nil && !w.wdClosed
			if fire {
				w.wdResets[id]++
			}
			w.mu.Unlock()
			if fire {
				w.t.Logf("hatest: %s's watchdog fired %v after the last keep-alive: resetting the host", id, time.Since(last).Round(time.Millisecond))
				w.powerOff(id)
			}
			return
		}
	}()
	return k
}

// stopWatchdogs stops every simulated watchdog without firing it.
func (w *World) stopWatchdogs() {
	w.mu.Lock()
	w.wdClosed = true
	for id, stop := range w.wdStop {
		stop()
		delete(w.wdStop, id)
	}
	w.mu.Unlock()
	w.wdWG.Wait()
}

// WatchdogResets reports how often host id's watchdog reset it.
func (w *World) WatchdogResets(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wdResets[id]
}

// Host returns host id's hardware as it is now (ID empty if unknown).
func (w *World) Host(id string) WorldHost {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h := w.hosts[id]; h != nil {
		return *h
	}
	return WorldHost{}
}

// Index is the member index of host id.
func (w *World) Index(id string) int {
	var i int
	fmt.Sscanf(id, "h%d", &i)
	return i - 1
}

// Kill powers host i off: its VMs die with it and its member crashes.
func (w *World) Kill(i int) { w.powerOff(w.ID(i)) }

func (w *World) powerOff(id string) {
	w.mu.Lock()
	if w.killed[id] {
		w.mu.Unlock()
		return
	}
	w.killed[id] = true
	w.power[id] = append(w.power[id], powerChange{at: time.Now()})
	if stop := w.wdStop[id]; stop != nil {
		stop() // a powered-off host's watchdog stops with it
		delete(w.wdStop, id)
	}
	h := w.hosts[id]
	if h != nil {
		// Power loss wipes the kernel's packet filter: the host boots with
		// no guard state.
		h.Guard = netguardtest.New()
	}
	w.mu.Unlock()
	if h != nil && h.Hyper != nil {
		h.Hyper.PowerOff()
	}
	w.Fencer.SetPower(id, fence.PowerOff)
	w.Crash(w.Index(id))
}

// offAt reports whether host id was powered off at t.
func (w *World) offAt(id string, t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	off := false
	for _, c := range w.power[id] {
		if c.at.After(t) {
			break
		}
		off = !c.on
	}
	return off
}

// Killed reports whether host id is powered off.
func (w *World) Killed(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.killed[id]
}

// Revive powers host i on and restarts its member, which registers again.
func (w *World) Revive(i int) error {
	id := w.ID(i)
	w.mu.Lock()
	h := w.hosts[id]
	delete(w.killed, id)
	w.mu.Unlock()
	if h.Hyper != nil {
		h.Hyper.PowerOn()
	}
	w.mu.Lock()
	w.power[id] = append(w.power[id], powerChange{at: time.Now(), on: true})
	w.mu.Unlock()
	w.Fencer.SetPower(id, fence.PowerOn)
	return w.Restart(i)
}

// Any returns a running member, preferring the leader.
func (w *World) Any() *ha.Cluster {
	if l := w.Leader(); l >= 0 {
		if m := w.Member(l); m != nil {
			return m
		}
	}
	for _, i := range w.Running() {
		if m := w.Member(i); m != nil {
			return m
		}
	}
	return nil
}

// State is a stale read from a running member.
func (w *World) State() *ha.State {
	for range 100 {
		if m := w.Any(); m != nil {
			if s, err := m.State(context.Background(), ha.Stale); err == nil {
				return s
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// WaitHosts waits until every non-witness host is online with a capacity.
func (w *World) WaitHosts(ctx context.Context) error {
	return w.Wait(ctx, "every host online", func(s *ha.State) bool {
		if len(s.Hosts) < w.N() {
			return false
		}
		for _, h := range s.Hosts {
			if h.State != ha.HostOnline || (h.Role != ha.RoleWitness && h.Capacity.MemoryKiB == 0) {
				return false
			}
		}
		return true
	})
}

// Wait polls the state until cond holds.
func (w *World) Wait(ctx context.Context, what string, cond func(s *ha.State) bool) error {
	for {
		if s := w.State(); s != nil && cond(s) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hatest: waiting for %s: %w\n%s", what, ctx.Err(), w.Describe())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// VMSpec returns a VM protected with policy restart, with a domain definition
// the fake hypervisor accepts, one MAC and one address.
func VMSpec(name string, memMiB uint64, vcpus int, n int) ha.VM {
	uuid := fmt.Sprintf("00000000-0000-4000-8000-%012x", n+1)
	mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", (n>>16)&0xff, (n>>8)&0xff, n&0xff)
	return ha.VM{
		Name: name, UUID: uuid,
		Spec: ha.VMSpec{
			DomainXML: xenctltest.DomainXML(name, uuid, memMiB*1024, vcpus, mac),
			MemoryKiB: memMiB * 1024, VCPUs: vcpus, MACs: []string{mac},
			Addrs: []string{fmt.Sprintf("198.18.%d.%d", 1+n/250, 1+n%250)},
		},
		Policy: ha.Policy{Restart: ha.RestartAlways, MaxLocalRestarts: 2},
	}
}

// AddVMs puts VMs (and a fake volume for each VM that names one) into the
// cluster and waits until each runs somewhere.
func (w *World) AddVMs(ctx context.Context, vms ...ha.VM) error {
	for _, vm := range vms {
		for _, id := range vm.Spec.Volumes {
			w.Store.Create(id)
			if err := w.put(ctx, func(m *ha.Cluster) error {
				return m.PutVolume(ctx, ha.Volume{Volume: storage.Volume{ID: id, Kind: FakeKind, Generation: 1}})
			}); err != nil {
				return err
			}
		}
		if err := w.put(ctx, func(m *ha.Cluster) error { return m.PutVM(ctx, vm) }); err != nil {
			return err
		}
	}
	for _, vm := range vms {
		if _, err := w.WaitRunning(ctx, vm.Name, ""); err != nil {
			return err
		}
	}
	return nil
}

func (w *World) put(ctx context.Context, fn func(m *ha.Cluster) error) error {
	for {
		m := w.Any()
		if m != nil {
			err := fn(m)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// RunningOn returns the hosts where the VM's domain is active.
func (w *World) RunningOn(vm string) []string { return w.Hyper.Running(vm) }

// WaitRunning waits until vm is executing on exactly one host other than
// notOn, is assigned there and observed running by the cluster, and returns
// the host.
func (w *World) WaitRunning(ctx context.Context, vm, notOn string) (string, error) {
	var host string
	err := w.Wait(ctx, "VM "+vm+" running", func(s *ha.State) bool {
		v := s.VMs[vm]
		if v == nil || v.Host == "" || v.Host == notOn {
			return false
		}
		on := w.Hyper.Running(vm)
		if len(on) != 1 || on[0] != v.Host || v.Observed.Host != v.Host || v.Observed.State != xenctl.StateRunning {
			return false
		}
		host = v.Host
		return true
	})
	return host, err
}

// VMsOn returns the VMs assigned to host, sorted.
func (w *World) VMsOn(host string) []string {
	s := w.State()
	var out []string
	for name, vm := range s.VMs {
		if vm.Host == host {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Describe renders hosts and VMs for failure messages.
func (w *World) Describe() string {
	s := w.State()
	if s == nil {
		return "(no member answers)"
	}
	var b strings.Builder
	for _, id := range slices.Sorted(mapKeys(s.Hosts)) {
		h := s.Hosts[id]
		fmt.Fprintf(&b, "host %s %s %s epoch=%d killed=%v\n", id, h.Role, h.State, h.Epoch, w.Killed(id))
	}
	for _, name := range slices.Sorted(mapKeys(s.VMs)) {
		vm := s.VMs[name]
		fmt.Fprintf(&b, "vm %s host=%s epoch=%d restarts=%d pending=%q observed=%s@%s(%s) running-on=%v\n", name, vm.Host, vm.OwnerEpoch, vm.LocalRestarts, vm.Pending, vm.Observed.State, vm.Observed.Host, vm.Observed.Reason, w.Hyper.Running(name))
	}
	return b.String()
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
