package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/xenctl"
)

// The leader's incident controller: suspect → fence → place → assign.
// It keeps no state of its own that matters: every step reads
// the replicated state and commits its outcome, so a new leader (after a
// Barrier) continues any incident where the old one stopped.

// Failover event kinds.
const (
	EventHostWarn       EventKind = "host.warn"         // silent past WarnTime
	EventHostSuspect    EventKind = "host.suspect"      // committed suspect: fencing starts
	EventHostBack       EventKind = "host.back"         // a suspect host renewed before it was fenced
	EventFenceAttempt   EventKind = "fence.attempt"     // one fencing attempt (Message: method and outcome)
	EventFenceFailed    EventKind = "fence.failed"      // a fencing round failed; retried with backoff
	EventFenceNeeded    EventKind = "fence.needed"      // no fencer can act: an operator must AckFence
	EventHostFenced     EventKind = "host.fenced"       // a fence record is committed
	EventVMPlaced       EventKind = "vm.placed"         // a VM was assigned to Host
	EventVMPending      EventKind = "vm.pending"        // a VM waits (Message: why)
	EventVMRestart      EventKind = "vm.restart"        // a local restart was granted
	EventMigrateFailed  EventKind = "vm.migrate-failed" // a live migration failed; the VM runs on Host (Message: the hypervisor's error)
	EventIsolated       EventKind = "host.isolated"     // this host lost its lease and isolated its VMs
	EventIncidentClosed EventKind = "incident.closed"   // Message: the timeline
	EventReconciled     EventKind = "agent.reconciled"  // the agent acted on its hypervisor (Message: plan)
)

// failover holds one member's failover services.
type failover struct {
	c     *Cluster
	cfg   Config
	log   *slog.Logger
	det   *detector
	lease *hostLease
	agent *agent // nil on a member that runs no VMs

	leaderKick    chan struct{}
	reregistering atomic.Bool
}

// startFailover registers the failover services with c's hooks (they live
// in the hooks' closures, so the core's struct needs no field of ours).
// Called by New before Raft can apply anything.
func (c *Cluster) startFailover() {
	f := &failover{
		c:          c,
		cfg:        c.cfg,
		log:        c.log,
		det:        newDetector(fenceTimings(&c.cfg), nil),
		lease:      newHostLease(c.cfg.Watchdog),
		leaderKick: make(chan struct{}, 1),
	}
	f.det.setSelf(c.cfg.ID)
	if c.cfg.Role != RoleWitness && c.cfg.Hypervisor != nil {
		f.agent = newAgent(f)
	}
	c.onApplied(f.applied)
	c.onLeadership(f.lead)
	c.onStart(f.renewLoop)
	if f.agent != nil {
		c.onStart(f.agent.run)
	}
}

func (f *failover) emit(e Event) { f.c.emit(e) }

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// applied runs on every member after each command: it feeds the detector,
// wakes the agent and the controller, and turns commits into events.
func (f *failover) applied(cmd command, m applyMeta, result any, err error) {
	if err != nil {
		return
	}
	switch c := cmd.(type) {
	case *renewCmd:
		f.det.renewed(c.Host)
		return // the hot path: nothing else to do
	case *registerCmd:
		f.det.renewed(c.Host)
	case *suspectCmd:
		f.emit(Event{Kind: EventHostSuspect, Host: c.Host, Index: m.Index, Message: fmt.Sprintf("no renewal for %v: fencing", c.Silence.Round(time.Millisecond))})
	case *fenceCmd:
		msg := "fenced by " + c.Method + ": " + c.Evidence
		if c.Manual {
			msg = "fence acknowledged by " + c.Operator + ": " + c.Evidence
		}
		f.emit(Event{Kind: EventHostFenced, Host: c.Host, Index: m.Index, Message: msg})
	case *assignCmd:
		for _, mv := range c.Moves {
			f.emit(Event{Kind: EventVMPlaced, Host: mv.Host, VM: mv.VM, Index: m.Index, Message: c.Reason})
		}
		for _, vm := range slices.Sorted(mapKeys(c.Unplaced)) {
			f.emit(Event{Kind: EventVMPending, VM: vm, Index: m.Index, Message: c.Unplaced[vm]})
		}
	case *restartCmd:
		f.emit(Event{Kind: EventVMRestart, Host: c.Host, VM: c.VM, Index: m.Index})
	case *migratedCmd:
		if c.Err != "" {
			f.emit(Event{Kind: EventMigrateFailed, Host: c.From, VM: c.VM, Index: m.Index,
				Message: fmt.Sprintf("live migration of %s from %s to %s failed; it still runs on %s: %s", c.VM, c.From, c.To, c.From, c.Err)})
		}
	case *observedCmd:
		f.emitClosed(c.Host, m, result)
	case *incidentCloseCmd:
		f.emitClosed("", m, result)
	}
	if f.agent != nil {
		kick(f.agent.kick)
	}
	kick(f.leaderKick)
}

// emitClosed sends the timelines of incidents a command closed.
func (f *failover) emitClosed(host string, m applyMeta, result any) {
	if closed, ok := result.([]string); ok {
		for _, line := range closed {
			f.emit(Event{Kind: EventIncidentClosed, Host: host, Index: m.Index, Message: line})
		}
	}
}

// lead runs the controller while this member leads.
func (f *failover) lead(ctx context.Context) {
	f.det.becameLeader()
	defer f.det.lostLeadership()
	// Everything the old leader committed is applied here before we judge.
	for {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f.c.barrier(bctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, ErrNotLeader) {
			return
		}
	}
	r := &recovery{f: f, fencing: map[string]context.CancelFunc{}, warned: map[string]bool{}, released: map[string]bool{}, probing: map[string]bool{}}
	defer r.stopAll()
	period := max(f.cfg.KeepAlive/2, 10*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		r.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.leaderKick:
		}
	}
}

// recovery is one leadership term's controller.
type recovery struct {
	f        *failover
	wg       sync.WaitGroup
	fencing  map[string]context.CancelFunc // "host@epoch" → cancel
	warned   map[string]bool
	released map[string]bool // "vm@host" releases proposed this term

	probeMu sync.Mutex
	probing map[string]bool // hosts with a probe in flight
}

func (r *recovery) stopAll() {
	for _, cancel := range r.fencing {
		cancel()
	}
	r.wg.Wait()
}

// step looks at the state once and commits what follows from it.
func (r *recovery) step(ctx context.Context) {
	f := r.f
	s, err := f.c.fsm.clone()
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, max(f.cfg.Lease, time.Second))
	defer cancel()
	active := map[string]bool{}
	for _, id := range slices.Sorted(mapKeys(s.Hosts)) {
		h := s.Hosts[id]
		if h.Role == RoleWitness || id == f.cfg.ID {
			continue // a witness runs nothing; the leader is alive by definition
		}
		v := f.det.verdict(id)
		if v.Probe {
			r.probe(ctx, id, h.Addr)
		}
		switch h.State {
		case HostOnline, HostMaintenance:
			switch v.Health {
			case healthOK:
				r.warned[id] = false
			case healthWarn:
				if !r.warned[id] {
					r.warned[id] = true
					f.emit(Event{Kind: EventHostWarn, Host: id, Message: fmt.Sprintf("no lease renewal for %v", v.Silence.Round(time.Millisecond))})
				}
			case healthDead:
				// A host in maintenance can die too; renewing brings it
				// back online (out of maintenance).
				_, err := f.c.propose(pctx, &suspectCmd{Host: id, Epoch: h.Epoch, LastSeen: time.Now().Add(-v.Silence), Silence: v.Silence})
				if err != nil {
					f.log.Debug("marking host suspect failed", "host", id, "err", err)
				}
			}
		case HostSuspect:
			active[r.startFence(ctx, s, id, h.Epoch)] = true
		}
	}
	for key, cancel := range r.fencing {
		if !active[key] {
			cancel() // it came back, or the fence landed: stop trying
			delete(r.fencing, key)
		}
	}
	r.placeAll(pctx, s)
	for _, inc := range s.Incidents {
		// Only fenced hosts' incidents: a suspect one may still come back.
		if h := s.Hosts[inc.Host]; h != nil && h.State != HostSuspect && s.incidentDone(inc) {
			if _, err := f.c.propose(pctx, &incidentCloseCmd{ID: inc.ID}); err != nil {
				f.log.Debug("closing incident failed", "incident", inc.ID, "err", err)
			}
		}
	}
}

// startFence starts fencing host at epoch unless it is under way, and
// returns the fence's key. The fence belongs to the incident it is run for:
// a host that renewed and fell silent again has a new one, and a proof from
// the old one does not prove it off now.
func (r *recovery) startFence(ctx context.Context, s *State, host string, epoch uint64) string {
	incident := ""
	if inc := s.findIncident(host, epoch); inc != nil {
		incident = inc.ID
	}
	key := fmt.Sprintf("%s@%d#%s", host, epoch, incident)
	if r.fencing[key] == nil {
		fctx, cancel := context.WithCancel(ctx)
		r.fencing[key] = cancel
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.fence(fctx, host, epoch, incident)
		}()
	}
	return key
}

// probe asks host, at addr, whether it is there, unless a probe of it is
// already in flight, and tells the detector. Any answer will do, even an
// error: only a member that is up answers at all. A probe that gets no
// answer within DeadTime failed. Probes of one host are KeepAlive apart.
func (r *recovery) probe(ctx context.Context, host, addr string) {
	r.probeMu.Lock()
	defer r.probeMu.Unlock()
	if r.probing[host] || addr == "" {
		return
	}
	r.probing[host] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f := r.f
		start := f.det.now()
		pctx, cancel := context.WithTimeout(ctx, f.cfg.DeadTime)
		_, err := f.c.call(pctx, addr, rpcRequest{Op: opPing})
		cancel()
		if ctx.Err() != nil {
			return
		}
		f.det.probed(host, start, err == nil)
		if err != nil {
			kick(f.leaderKick)
		}
		select {
		case <-ctx.Done():
		case <-time.After(max(f.cfg.KeepAlive, 10*time.Millisecond)):
		}
		r.probeMu.Lock()
		delete(r.probing, host)
		r.probeMu.Unlock()
	}()
}

// fence fences host at epoch, for the open incident with ID incident,
// until a proof is committed or ctx ends, recording every attempt and
// backing off between rounds.
func (r *recovery) fence(ctx context.Context, host string, epoch uint64, incident string) {
	f := r.f
	b := f.cfg.FenceRetry
	if b.Initial <= 0 {
		b = Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Factor: 2}
	}
	wait := b.Initial
	toldOperator := false
	for round := 1; ctx.Err() == nil; round++ {
		if f.cfg.FencePolicy == AllowLeaseExpiry {
			if v := f.det.verdict(host); v.LeaseExpired {
				ev := fmt.Sprintf("no lease renewal applied for %v, longer than Lease %v + WatchdogTimeout %v: the host's watchdog has reset it",
					v.Silence.Round(time.Millisecond), f.cfg.Lease, f.cfg.WatchdogTimeout)
				r.commitFence(ctx, &fenceCmd{Host: host, Epoch: epoch, Method: "lease-expiry", Evidence: ev, ProofTime: time.Now(),
					Proof: fence.ProofSelfFence.String(), Incident: incident})
				return
			}
		}
		if f.cfg.Fencer == nil {
			if !toldOperator {
				toldOperator = true
				f.emit(Event{Kind: EventFenceNeeded, Host: host, Message: "no fencer configured: power the host off and call AckFence, or configure Config.Fencer"})
			}
		} else {
			proof, attempts, err := runFence(ctx, f.cfg.Fencer, host)
			for _, a := range attempts {
				msg := a.Method + ": fenced"
				if a.Err != "" {
					msg = a.Method + ": " + a.Err
				}
				f.emit(Event{Kind: EventFenceAttempt, Host: host, Message: msg})
			}
			if err == nil {
				r.commitFence(ctx, &fenceCmd{Host: host, Epoch: epoch, Method: proof.Method, Evidence: proof.Evidence, ProofTime: proof.Time, Attempts: attempts,
					Proof: proof.Kind.String(), Incident: incident})
				return
			}
			if ctx.Err() != nil {
				return
			}
			f.emit(Event{Kind: EventFenceFailed, Host: host, Message: fmt.Sprintf("round %d: %v; retrying in %v", round, err, wait)})
			pctx, cancel := context.WithTimeout(ctx, max(f.cfg.Lease, time.Second))
			_, perr := f.c.propose(pctx, &fenceFailedCmd{Host: host, Epoch: epoch, Attempts: attempts, Err: err.Error(), Retry: wait})
			cancel()
			if errors.Is(perr, ErrStaleEpoch) {
				return // fenced meanwhile (an operator acknowledged it)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(time.Duration(float64(wait)*max(b.Factor, 1)), max(b.Max, b.Initial))
	}
}

// commitFence commits a proof. It does so even if ctx ended meanwhile (the
// host came back): a proof is the truth, and the host is off.
func (r *recovery) commitFence(ctx context.Context, cmd *fenceCmd) {
	f := r.f
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*max(f.cfg.Lease, time.Second))
	defer cancel()
	for {
		_, err := f.c.propose(pctx, cmd)
		if err == nil || errors.Is(err, ErrRefused) || pctx.Err() != nil {
			if err != nil && !errors.Is(err, ErrStaleEpoch) {
				f.log.Warn("fence proof not committed", "host", cmd.Host, "err", err)
			}
			return
		}
		if !f.c.isLeader() {
			// The next leader fences again; the host is off, so its
			// fencer confirms at once.
			return
		}
	}
}

// runFence runs the fencer, with every attempt recorded when it is a Chain.
func runFence(ctx context.Context, fencer fence.Fencer, host string) (fence.Proof, []FenceAttempt, error) {
	if ch, ok := fencer.(*fence.Chain); ok {
		p, as, err := ch.FenceAttempts(ctx, host)
		out := make([]FenceAttempt, 0, len(as))
		for _, a := range as {
			fa := FenceAttempt{Method: a.Method, Start: a.Start, Duration: a.Duration}
			if a.Err != nil {
				fa.Err = a.Err.Error()
			}
			out = append(out, fa)
		}
		return p, out, err
	}
	start := time.Now()
	p, err := fencer.Fence(ctx, host)
	a := FenceAttempt{Method: p.Method, Start: start, Duration: time.Since(start)}
	if err != nil {
		a.Err = err.Error()
		var fe *fence.Error
		if errors.As(err, &fe) {
			a.Method = fe.Method
		}
	} else if p.Host != host {
		err = fmt.Errorf("fencer returned a proof for %q instead of %q: %w", p.Host, host, fence.ErrNotOff)
		a.Err = err.Error()
	}
	if a.Method == "" {
		a.Method = "fencer"
	}
	return p, []FenceAttempt{a}, err
}

// placeAll finds every VM that needs a host and may have one, grants local
// restarts, drains hosts in maintenance, and commits one assignment.
func (r *recovery) placeAll(ctx context.Context, s *State) {
	f := r.f
	// Forget moves that happened: the same VM may be drained from the same
	// host again later in this term.
	for key := range r.released {
		name, host, _ := strings.Cut(strings.TrimPrefix(key, "live:"), "@")
		if vm := s.VMs[name]; vm == nil || vm.Host != host {
			delete(r.released, key)
		}
	}
	var want []string
	for _, name := range slices.Sorted(mapKeys(s.VMs)) {
		vm := s.VMs[name]
		if vm.Deleting {
			r.finishDelete(ctx, s, vm)
			continue
		}
		if !placeable(vm) {
			continue
		}
		if vm.Host == "" {
			if mayLeave(s, vm) != nil {
				continue
			}
			// It may go because the host it last ran on left or was
			// fenced, not because that host reported it stopped: the
			// host may still run it under its lease, so wait that out
			// as for a VM it holds.
			if o := vm.Observed; o.Host != "" && stillMayRun(vm) != nil && !provenOff(s, o.Host) && !f.det.verdict(o.Host).Reassignable {
				continue
			}
			want = append(want, name)
			continue
		}
		h := s.Hosts[vm.Host]
		switch {
		case h == nil || h.State == HostLeft:
			// Removed, not fenced: it may be alive and still run the VM
			// under its lease. It stops renewing (and isolates itself once
			// it sees it left), so wait out the lease as after a fence.
			if !f.det.verdict(vm.Host).Reassignable {
				continue
			}
			want = append(want, name)
		case h.Epoch > vm.OwnerEpoch && h.State == HostFenced:
			// Fence before recover: the proof is committed (the epoch moved).
			// The proof decides the wait: none after a verified power-off,
			// otherwise until the host has been silent past its lease.
			if !h.ProvenOff && !f.det.verdict(vm.Host).Reassignable {
				continue
			}
			if mg := vm.Migrating; mg != nil {
				// It may run on its migration's target already: go there,
				// or wait until that host is fenced too.
				th := s.Hosts[mg.To]
				switch {
				case th != nil && eligibleHost(th):
					if _, err := f.c.propose(ctx, &assignCmd{Moves: []Assignment{{VM: name, Host: mg.To}}, Reason: "failover during live migration"}); err != nil {
						f.log.Debug("assignment to the migration target failed", "vm", name, "err", err)
					}
				case th == nil || th.State == HostLeft || th.Epoch > mg.ToEpoch:
					want = append(want, name)
				}
				continue
			}
			want = append(want, name)
		case h.Epoch > vm.OwnerEpoch:
			// Fenced, then registered again: registering came after it
			// destroyed what it ran at the old epoch.
			want = append(want, name)
		case h.State == HostMaintenance || (vm.MoveTo != "" && vm.MoveTo != vm.Host):
			if vm.Migrating != nil {
				continue // under way
			}
			key := name + "@" + vm.Host
			reason := "host " + vm.Host + " in maintenance"
			if h.State != HostMaintenance {
				reason = "migration to " + vm.MoveTo
			}
			// Live migration when both hypervisors can, once; stop and
			// start otherwise, or when it failed.
			// A failed live migration is recorded in the state: no leader
			// tries it again from this host, the VM moves by stop and start.
			if !r.released["live:"+key] && vm.MigrateFailed == nil {
				r.released["live:"+key] = true
				to := vm.MoveTo
				if to == "" {
					if p := place(s, []string{name}); len(p.Assign) == 1 {
						to = p.Assign[0].Host
					}
				}
				if canLiveMigrate(s, vm, to) {
					if _, err := f.c.propose(ctx, &migrateCmd{VM: name, From: vm.Host, To: to}); err != nil {
						f.log.Debug("live migration not started", "vm", name, "err", err)
					} else {
						continue
					}
				}
			}
			if !r.released[key] {
				r.released[key] = true
				if _, err := f.c.propose(ctx, &releaseCmd{VM: name, Host: vm.Host, MoveTo: vm.MoveTo, Reason: reason}); err != nil {
					f.log.Debug("release failed", "vm", name, "err", err)
					delete(r.released, key)
				}
			}
		case h.State == HostOnline && stoppedSinceAssigned(vm):
			if vm.LocalRestarts < vm.Policy.MaxLocalRestarts {
				if _, err := f.c.propose(ctx, &restartCmd{VM: name, Host: vm.Host, Count: vm.LocalRestarts}); err != nil {
					f.log.Debug("local restart grant failed", "vm", name, "err", err)
				}
				continue
			}
			// Restarted here often enough: relocate. The VM is released
			// first, and placed once this host reports it stopped.
			p := place(s, []string{name})
			if len(p.Assign) == 0 {
				continue
			}
			reason := fmt.Sprintf("stopped %d times on %s", vm.LocalRestarts+1, vm.Host)
			if _, err := f.c.propose(ctx, &releaseCmd{VM: name, Host: vm.Host, MoveTo: p.Assign[0].Host, Reason: reason}); err != nil {
				f.log.Debug("relocation release failed", "vm", name, "err", err)
			}
		}
	}
	if len(want) == 0 {
		return
	}
	p := place(s, want)
	for _, name := range p.Evict {
		vm := s.VMs[name]
		key := name + "@" + vm.Host
		if r.released[key] {
			continue
		}
		r.released[key] = true
		if _, err := f.c.propose(ctx, &releaseCmd{VM: name, Host: vm.Host, Reason: "stopped to make room for a restart VM"}); err != nil {
			f.log.Debug("eviction failed", "vm", name, "err", err)
			delete(r.released, key)
		}
	}
	cmd := &assignCmd{Moves: p.Assign, Reason: "failover", Decided: time.Now()}
	for vm, why := range p.Unplaced {
		if s.VMs[vm].Pending != why {
			if cmd.Unplaced == nil {
				cmd.Unplaced = map[string]string{}
			}
			cmd.Unplaced[vm] = why
		}
	}
	if len(cmd.Moves) == 0 && len(cmd.Unplaced) == 0 {
		return
	}
	if _, err := f.c.propose(ctx, cmd); err != nil {
		f.log.Debug("assignment not committed; retrying next step", "err", err)
	}
}

// finishDelete proposes vm.delete again for a VM being deleted once no
// host may run it (or once a live migration that was under way ended, so
// that its new host stops it).
func (r *recovery) finishDelete(ctx context.Context, s *State, vm *VM) {
	if vm.Migrating != nil || (vm.Host == "" && mayLeave(s, vm) != nil) {
		return
	}
	if _, err := r.f.c.propose(ctx, &vmDelete{Name: vm.Name}); err != nil {
		r.f.log.Debug("deleting a stopped VM failed; retried next step", "vm", vm.Name, "err", err)
	}
}

// stoppedSinceAssigned reports whether the VM's host reported it crashed
// or shut off from a view that includes the VM's assignment there: only
// then is the stop the outcome of that assignment. An older report (made
// before the host learnt it got the VM back, in flight meanwhile) tells of
// an earlier stay, and acting on it would move the VM before it started.
func stoppedSinceAssigned(vm *VM) bool {
	o := vm.Observed
	return o.Host == vm.Host && o.ViewIndex >= vm.Assigned &&
		(o.State == xenctl.StateCrashed || o.State == xenctl.StateShutoff)
}

// provenOff reports whether host is fenced with a verified power-off that
// still holds (see Host.ProvenOff).
func provenOff(s *State, host string) bool {
	h := s.Hosts[host]
	return h != nil && h.State == HostFenced && h.ProvenOff
}

// canLiveMigrate reports whether vm can be live-migrated to host to: no
// cluster volumes (their generation changes hands only while nobody
// writes), and hypervisors on both sides that can.
func canLiveMigrate(s *State, vm *VM, to string) bool {
	if to == "" || to == vm.Host || len(vm.Spec.Volumes) > 0 || vm.Migrating != nil {
		return false
	}
	from, t := s.Hosts[vm.Host], s.Hosts[to]
	return from != nil && t != nil && from.MigrateURI != "" && t.MigrateURI != "" && eligibleHost(t)
}
