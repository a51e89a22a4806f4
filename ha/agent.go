package ha

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/xenctl"
)

// The host agent runs on every member that has a hypervisor. Each round it
// reads the replicated state, asks the hypervisor what runs, lets reconcile
// decide, carries the plan out, puts the network guard in line and reports
// what it observed. It rounds on every applied command, on every hypervisor
// event (a libvirtd reconnect included), on every KeepAlive, and just before
// its lease would stop covering it.

// releaseGrace is how long a VM taken off this host (released for a
// migration or a drain) gets to shut down before it is destroyed.
const releaseGrace = 10 * time.Second

// migrationTimeout bounds one live migration.
const migrationTimeout = 5 * time.Minute

// hypervisorTimeout bounds one hypervisor call: a hung libvirtd must not hold
// the agent past its lease.
const hypervisorTimeout = 5 * time.Second

type agent struct {
	f    *failover
	hv   xenctl.Hypervisor
	kick chan struct{}

	mu         sync.Mutex
	started    map[string]startMark // VM → its mark when this agent last started it
	paused     map[string]uint64    // VM → epoch when isolation paused it
	attached   map[string]time.Time
	busy       map[string]bool // VMs with a slow action under way
	isolated   bool
	reporting  atomic.Bool
	registered bool
	guard      guardKeeper
}

func newAgent(f *failover) *agent {
	return &agent{
		f:        f,
		hv:       f.cfg.Hypervisor,
		kick:     make(chan struct{}, 1),
		started:  map[string]startMark{},
		paused:   map[string]uint64{},
		attached: map[string]time.Time{},
		busy:     map[string]bool{},
		guard:    guardKeeper{g: f.cfg.Guard},
	}
}

// run is the agent's life.
func (a *agent) run(ctx context.Context) {
	if w, ok := a.hv.(xenctl.Watcher); ok {
		if ch, err := w.Events(ctx); err == nil {
			go func() {
				for ev := range ch {
					if ev.Kind == xenctl.EventReconnected {
						a.f.log.Info("hypervisor reconnected: reconciling from a fresh inventory")
					}
					kick(a.kick)
				}
			}()
		}
	}
	t := time.NewTicker(a.f.cfg.KeepAlive)
	defer t.Stop()
	for {
		if !a.registered {
			a.register(ctx)
		}
		a.round(ctx)
		_, until, changed := a.f.lease.snapshot()
		var deadline <-chan time.Time
		var tm *time.Timer
		if !until.IsZero() {
			if d := time.Until(until.Add(-a.f.cfg.IsolationLead)); d > 0 {
				tm = time.NewTimer(d)
				deadline = tm.C
			}
		}
		select {
		case <-ctx.Done():
		case <-a.kick:
		case <-changed:
		case <-t.C:
		case <-deadline:
		}
		if tm != nil {
			tm.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// register reports this host's capacity once, which also brings a joining
// host online.
func (a *agent) register(ctx context.Context) {
	var epoch uint64
	var state HostState
	a.f.c.read(func(s *State) {
		if h := s.Hosts[a.f.cfg.ID]; h != nil {
			epoch, state = h.Epoch, h.State
		}
	})
	if state == "" || state == HostFenced || state == HostLeft {
		return // not a member yet, or the fenced path registers
	}
	rctx, cancel := context.WithTimeout(ctx, a.f.cfg.Lease)
	defer cancel()
	_, err := a.f.c.propose(rctx, &registerCmd{Host: a.f.cfg.ID, Epoch: epoch, Capacity: a.f.capacity(rctx), MigrateURI: a.f.migrateURI()})
	switch {
	case err == nil:
		a.registered = true
	case errors.Is(err, ErrRefused):
		a.f.log.Warn("host record refused; this host gets no VMs until it registers", "err", err)
	}
}

// migrateURI is where other hypervisors reach this one for live
// migrations, when it can receive them.
func (f *failover) migrateURI() string {
	if _, ok := f.cfg.Hypervisor.(xenctl.Migrator); !ok {
		return ""
	}
	if u, ok := f.cfg.Hypervisor.(interface{ URI() string }); ok {
		return u.URI()
	}
	return ""
}

// capacity is what this host offers: the configured override, else what the
// hypervisor reports.
func (f *failover) capacity(ctx context.Context) *Capacity {
	if f.cfg.Capacity != nil {
		c := *f.cfg.Capacity
		return &c
	}
	if f.cfg.Hypervisor == nil {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, hypervisorTimeout)
	defer cancel()
	info, err := f.cfg.Hypervisor.HostInfo(hctx)
	if err != nil {
		return nil
	}
	return &Capacity{MemoryKiB: info.MemoryKiB, VCPUs: info.CPUs}
}

// view is what one round needs from the replicated state, copied out.
type view struct {
	index     uint64 // the state index read
	hostEpoch uint64
	hostState HostState
	desired   map[string]*VM
	managed   map[string]bool
	vms       map[string]VM
	volumes   map[string]Volume
	migrateTo map[string]string // host → MigrateURI
}

func (a *agent) view() view {
	v := view{desired: map[string]*VM{}, managed: map[string]bool{}, vms: map[string]VM{}, volumes: map[string]Volume{}, migrateTo: map[string]string{}}
	self := a.f.cfg.ID
	a.f.c.read(func(s *State) {
		v.index = s.Index
		if h := s.Hosts[self]; h != nil {
			v.hostEpoch, v.hostState = h.Epoch, h.State
		}
		for id, h := range s.Hosts {
			if h.MigrateURI != "" {
				v.migrateTo[id] = h.MigrateURI
			}
		}
		for name, vm := range s.VMs {
			c := *vm
			c.Spec.MACs = slices.Clone(vm.Spec.MACs)
			c.Spec.Addrs = slices.Clone(vm.Spec.Addrs)
			c.Spec.Volumes = slices.Clone(vm.Spec.Volumes)
			if vm.Migrating != nil {
				m := *vm.Migrating
				c.Migrating = &m
			}
			v.managed[name] = true
			v.vms[name] = c
			for _, id := range vm.Spec.Volumes {
				if vol := s.Volumes[id]; vol != nil {
					cv := *vol
					v.volumes[id] = cv
				}
			}
		}
	})
	return v
}

// round is one reconciliation.
func (a *agent) round(ctx context.Context) {
	f := a.f
	v := a.view()
	status, epoch := f.lease.status(time.Now(), f.cfg.IsolationLead)
	if v.hostEpoch != epoch || v.hostState == HostFenced || v.hostState == HostLeft {
		status = leaseIsolating // the cluster moved on without us
	}
	if status == leaseValid {
		for name, vm := range v.vms {
			if vm.Host == f.cfg.ID && vm.OwnerEpoch == epoch && !vm.Stopped {
				c := vm
				v.desired[name] = &c
			}
		}
	}
	if status != leaseValid {
		// Block before asking the hypervisor anything: a hung libvirtd
		// must not delay the one step that needs no hypervisor.
		if err := a.guard.apply(ctx, v, nil, true); err != nil {
			f.log.Error("isolating: blocking the VM network failed", "err", err)
		}
	}
	hctx, cancel := context.WithTimeout(ctx, hypervisorTimeout)
	doms, derr := a.hv.Domains(hctx)
	cancel()
	outgoing, incoming := map[string]bool{}, map[string]bool{}
	for name, vm := range v.vms {
		if m := vm.Migrating; m != nil {
			outgoing[name] = m.From == f.cfg.ID && v.desired[name] != nil
			incoming[name] = m.To == f.cfg.ID
		}
	}
	a.mu.Lock()
	in := reconcileInput{
		Epoch: epoch, Lease: status, Desired: v.desired, Managed: v.managed,
		Domains: doms, DomainsErr: derr,
		Started: maps.Clone(a.started), Paused: maps.Clone(a.paused), Response: isolationAction(&f.cfg),
		Outgoing: outgoing, Incoming: incoming,
	}
	a.mu.Unlock()
	p := reconcile(in)

	if p.BlockAll {
		// Network first, before anything else and whatever the hypervisor
		// says: the majority may start these VMs elsewhere soon.
		if err := a.guard.apply(ctx, v, nil, true); err != nil {
			f.log.Error("isolating: blocking the VM network failed", "err", err)
		}
		a.mu.Lock()
		first := !a.isolated
		a.isolated = true
		a.mu.Unlock()
		if first && (len(p.Actions) > 0 || derr == nil) {
			f.emit(Event{Kind: EventIsolated, Host: f.cfg.ID, Message: fmt.Sprintf("lease about to end without renewal: network blocked, VMs: %s", planString(p))})
		}
	} else {
		a.mu.Lock()
		a.isolated = false
		a.mu.Unlock()
	}
	if p.Skip {
		return
	}
	for _, act := range p.Actions {
		a.do(ctx, act, v, epoch)
	}
	if len(p.Actions) > 0 {
		f.emit(Event{Kind: EventReconciled, Host: f.cfg.ID, Message: planString(p)})
	}
	// What runs now decides the network and the report.
	hctx, cancel = context.WithTimeout(ctx, hypervisorTimeout)
	doms, derr = a.hv.Domains(hctx)
	cancel()
	if derr != nil {
		return
	}
	if status == leaseValid {
		executing := map[string]bool{}
		for _, d := range doms {
			if v.desired[d.Name] != nil && d.State.Executing() {
				executing[d.Name] = true
			}
		}
		if err := a.guard.apply(ctx, v, executing, false); err != nil {
			f.log.Warn("updating the VM network guard failed", "err", err)
		}
	}
	in.Domains = doms
	a.mu.Lock()
	in.Started = maps.Clone(a.started) // with this round's starts
	a.mu.Unlock()
	a.report(ctx, v, epoch, observations(in))
}

// do carries out one action. Failures are logged and retried next round.
func (a *agent) do(ctx context.Context, act action, v view, epoch uint64) {
	f := a.f
	hctx, cancel := context.WithTimeout(ctx, hypervisorTimeout)
	defer cancel()
	var err error
	switch act.Kind {
	case actStart:
		// Start only under a lease that still holds, and never let the
		// start outlive it: the plan may be a slow round old.
		st, ep := f.lease.status(time.Now(), f.cfg.IsolationLead)
		_, until, _ := f.lease.snapshot()
		if st != leaseValid || ep != epoch {
			return
		}
		sctx, scancel := context.WithDeadline(hctx, until.Add(-f.cfg.IsolationLead))
		defer scancel()
		vm := v.desired[act.VM]
		err = a.start(sctx, vm, v)
		a.mu.Lock()
		a.started[act.VM] = markOf(vm)
		a.mu.Unlock()
	case actStop:
		// A guest may take releaseGrace to shut down: never hold the loop
		// (and so isolation) for it.
		a.background(ctx, act.VM, func(ctx context.Context) error {
			sctx, scancel := context.WithTimeout(ctx, releaseGrace+hypervisorTimeout)
			defer scancel()
			if _, err := a.hv.Shutdown(sctx, act.VM, releaseGrace); err != nil {
				return err
			}
			a.detach(sctx, v.vms[act.VM], v)
			return nil
		})
	case actDestroy:
		err = a.hv.Destroy(hctx, act.VM)
		a.mu.Lock()
		delete(a.paused, act.VM)
		a.mu.Unlock()
		if err == nil && v.vms[act.VM].Host != f.cfg.ID {
			a.detach(hctx, v.vms[act.VM], v)
		}
	case actPause:
		p, ok := a.hv.(xenctl.Pauser)
		if !ok {
			err = a.hv.Destroy(hctx, act.VM)
			break
		}
		if err = p.Suspend(hctx, act.VM); err == nil {
			a.mu.Lock()
			a.paused[act.VM] = epoch
			a.mu.Unlock()
		} else {
			// A VM that cannot be paused must not keep running past the lease.
			err = errors.Join(err, a.hv.Destroy(hctx, act.VM))
		}
	case actShutdown:
		// In parallel: Grace is shorter than IsolationLead for one guest,
		// not for all of them in a row.
		g := f.cfg.IsolationResponse.Grace
		a.background(ctx, act.VM, func(ctx context.Context) error {
			sctx, scancel := context.WithTimeout(ctx, g+hypervisorTimeout)
			defer scancel()
			_, err := a.hv.Shutdown(sctx, act.VM, g)
			return err
		})
	case actMigrate:
		m := v.vms[act.VM].Migrating
		mig, ok := a.hv.(xenctl.Migrator)
		uri := v.migrateTo[m.To]
		a.background(ctx, act.VM, func(ctx context.Context) error {
			var merr error
			if !ok || uri == "" {
				merr = fmt.Errorf("live migration of %s from %s to %s: %w", act.VM, f.cfg.ID, m.To, xenctl.ErrNotSupported)
			} else {
				mctx, cancel := context.WithTimeout(ctx, migrationTimeout)
				merr = mig.Migrate(mctx, act.VM, xenctl.MigrateOptions{URI: uri, Persist: true}, nil)
				cancel()
			}
			cmd := &migratedCmd{VM: act.VM, From: f.cfg.ID, To: m.To, Epoch: epoch}
			if merr != nil {
				cmd.Err = merr.Error()
			}
			// The report must land, or the VM stays in limbo: retry for a
			// lease's time, after which the failover path takes over.
			rctx, cancel := context.WithTimeout(ctx, 4*f.cfg.Lease)
			defer cancel()
			for {
				_, err := f.c.propose(rctx, cmd)
				if err == nil || errors.Is(err, ErrRefused) || rctx.Err() != nil {
					if merr != nil {
						return merr
					}
					return err
				}
				select {
				case <-rctx.Done():
				case <-time.After(f.cfg.KeepAlive):
				}
			}
		})
	case actResume:
		if p, ok := a.hv.(xenctl.Pauser); ok {
			if err = p.Resume(hctx, act.VM); err == nil {
				a.mu.Lock()
				delete(a.paused, act.VM)
				a.mu.Unlock()
			}
		}
	}
	if err != nil {
		f.log.Warn("host agent action failed; retrying next round", "action", act.String(), "err", err)
	}
}

// background runs a slow action on one VM outside the agent's loop, at most
// one per VM at a time, and rounds again when it ends.
func (a *agent) background(ctx context.Context, vm string, fn func(context.Context) error) {
	a.mu.Lock()
	if a.busy[vm] {
		a.mu.Unlock()
		return
	}
	a.busy[vm] = true
	a.mu.Unlock()
	go func() {
		err := fn(ctx)
		a.mu.Lock()
		delete(a.busy, vm)
		a.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			a.f.log.Warn("stopping a VM failed; retrying next round", "vm", vm, "err", err)
		}
		kick(a.kick)
	}()
}

// start makes the VM's storage usable at its committed generation (promoting
// role-based volumes), defines the domain from its spec and boots it.
func (a *agent) start(ctx context.Context, vm *VM, v view) error {
	sources := map[string]storage.Source{}
	for _, id := range vm.Spec.Volumes {
		vol, ok := v.volumes[id]
		if !ok {
			return fmt.Errorf("start VM %s on %s: volume %s is not in the cluster state: add it with PutVolume", vm.Name, a.f.cfg.ID, id)
		}
		be := a.f.cfg.Storage[vol.Kind]
		if be == nil {
			return fmt.Errorf("start VM %s on %s: no storage backend for kind %q in Config.Storage", vm.Name, a.f.cfg.ID, vol.Kind)
		}
		src, err := be.Attach(ctx, vol.Volume)
		if err != nil {
			return fmt.Errorf("start VM %s on %s: attach volume %s generation %d: %w", vm.Name, a.f.cfg.ID, id, vol.Generation, err)
		}
		sources[id] = src
		if p, ok := be.(storage.Promoter); ok {
			if err := p.Promote(ctx, vol.Volume); err != nil {
				return fmt.Errorf("start VM %s on %s: promote volume %s: %w", vm.Name, a.f.cfg.ID, id, err)
			}
		}
	}
	if len(vm.Spec.Volumes) > 0 {
		a.mu.Lock()
		a.attached[vm.Name] = time.Now()
		a.mu.Unlock()
	}
	if vm.Spec.DomainXML != "" {
		xml, err := withDiskSources(vm.Spec.DomainXML, sources)
		if err != nil {
			return fmt.Errorf("start VM %s on %s: %w", vm.Name, a.f.cfg.ID, err)
		}
		if _, err := a.hv.Define(ctx, xml); err != nil {
			return fmt.Errorf("start VM %s on %s: define: %w", vm.Name, a.f.cfg.ID, err)
		}
	}
	if err := a.hv.Start(ctx, vm.Name); err != nil {
		return fmt.Errorf("start VM %s on %s: %w", vm.Name, a.f.cfg.ID, err)
	}
	return nil
}

// detach releases the volumes of a VM this host no longer runs. A backend
// never disturbs a newer holder, so this is safe after a takeover.
func (a *agent) detach(ctx context.Context, vm VM, v view) {
	for _, id := range vm.Spec.Volumes {
		vol, ok := v.volumes[id]
		if !ok {
			continue
		}
		if be := a.f.cfg.Storage[vol.Kind]; be != nil {
			if p, ok := be.(storage.Promoter); ok {
				_ = p.Demote(ctx, vol.Volume)
			}
			_ = be.Detach(ctx, vol.Volume)
		}
	}
}

// report proposes one vm.observed for every VM whose replicated observation
// differs from what the hypervisor says now. At most one report is in
// flight, so a partition never piles them up.
func (a *agent) report(ctx context.Context, v view, epoch uint64, obs map[string]ObservedVM) {
	a.addUndefinedReleases(v, obs)
	var out []ObservedVM
	a.mu.Lock()
	for name, vm := range v.vms {
		// Released from here before this host ever reported it: the
		// cluster waits for its word that it does not run it.
		if _, ok := obs[name]; !ok && vm.Host == "" && vm.Observed.Host == a.f.cfg.ID && vm.Observed.ViewIndex < vm.Released {
			obs[name] = ObservedVM{VM: name, State: xenctl.StateShutoff, Reason: "not defined here"}
		}
	}
	for _, name := range slices.Sorted(mapKeys(obs)) {
		o := obs[name]
		cur := v.vms[name].Observed
		if at, ok := a.attached[name]; ok && v.desired[name] != nil {
			o.Attached = at
		}
		stale := v.vms[name].Host == "" && cur.ViewIndex < v.vms[name].Released
		if cur.Host == a.f.cfg.ID && cur.State == o.State && !stale {
			continue
		}
		if cur.Host != a.f.cfg.ID && !o.State.Active() && v.vms[name].Host != a.f.cfg.ID {
			continue // not ours and not running here: nothing to say
		}
		out = append(out, o)
	}
	a.mu.Unlock()
	if len(out) == 0 || !a.reporting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer a.reporting.Store(false)
		rctx, cancel := context.WithTimeout(ctx, a.f.cfg.Lease)
		defer cancel()
		if _, err := a.f.c.propose(rctx, &observedCmd{Host: a.f.cfg.ID, Epoch: epoch, View: v.index, VMs: out}); err != nil {
			a.f.log.Debug("observed-state report failed; resent next round", "err", err)
			return
		}
		a.mu.Lock()
		for _, o := range out {
			if !o.Attached.IsZero() {
				delete(a.attached, o.VM)
			}
		}
		a.mu.Unlock()
		kick(a.kick)
	}()
}

// addUndefinedReleases adds to obs the VMs taken off this host (released,
// being deleted) that have no domain here and whose release this host has
// not reported on: without its word they would wait for good.
func (a *agent) addUndefinedReleases(v view, obs map[string]ObservedVM) {
	for name, vm := range v.vms {
		if _, ok := obs[name]; !ok && vm.Host == "" && vm.Observed.Host == a.f.cfg.ID && vm.Observed.ViewIndex < vm.Released {
			obs[name] = ObservedVM{VM: name, State: xenctl.StateShutoff, Reason: "not defined here"}
		}
	}
}

// destroyAll destroys every cluster VM active on this host and blocks the
// network: the medicine for a host that learns it was fenced.
func (a *agent) destroyAll(ctx context.Context) error {
	v := a.view()
	if err := a.guard.apply(ctx, v, nil, true); err != nil {
		a.f.log.Error("blocking the VM network failed", "err", err)
	}
	hctx, cancel := context.WithTimeout(ctx, hypervisorTimeout)
	defer cancel()
	doms, err := a.hv.Domains(hctx)
	if err != nil {
		return fmt.Errorf("list domains on %s: %w", a.f.cfg.ID, err)
	}
	var errs []error
	for _, d := range doms {
		if v.managed[d.Name] && d.State.Active() {
			if err := a.hv.Destroy(hctx, d.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	a.mu.Lock()
	clear(a.paused)
	clear(a.started)
	a.mu.Unlock()
	return errors.Join(errs...)
}
