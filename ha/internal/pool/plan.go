package pool

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Plan returns what follows from s at now: fencing for silent hosts,
// restarts, moves and placements for VMs, waits and closed incidents. It is
// deterministic (the same s and now give the same actions in the same
// order) and does not modify s. Carry the actions out, commit their
// outcomes through the transitions, and call Plan again.
func Plan(s *State, now time.Time) []Action {
	p := &planner{s: s, now: now}
	for _, id := range sortedKeys(s.Hosts) {
		p.host(s.Hosts[id])
	}
	p.s = p.asSuspected()
	p.settled = settled(p.s, now)
	for _, name := range sortedKeys(s.VMs) {
		p.vm(s.VMs[name])
	}
	p.place()
	for _, inc := range s.Incidents {
		if s.incidentDone(inc) {
			p.add(Action{Kind: ActClose, Host: inc.Host, Epoch: inc.Epoch})
		}
	}
	return p.out
}

type planner struct {
	s    *State
	now  time.Time
	out  []Action
	want []string
	// settled: nothing is in flight. Failback and operator moves wait
	// for it: moving a VM while another is in flight lets two VMs that
	// each want the other's host swap for ever.
	settled bool
	// leaving are the VMs this plan already moves off their host: placement
	// must not evict them a second time.
	leaving map[string]bool
}

// asSuspected returns the state as it will be once this plan's suspicions
// are committed, so that the rest of the plan neither places a VM on a host
// it is about to fence nor decides about that host's VMs as if it were up.
func (p *planner) asSuspected() *State {
	view := p.s
	for _, a := range p.out {
		if a.Kind != ActSuspect {
			continue
		}
		if view == p.s {
			c := *p.s
			c.Hosts = maps.Clone(p.s.Hosts)
			view = &c
		}
		h := *view.Hosts[a.Host]
		h.State = HostSuspect
		view.Hosts[a.Host] = &h
	}
	return view
}

// settled reports whether nothing is in flight: no host is suspect, no VM
// is migrating, stopping or about to be placed. A VM that waits for room
// does not count, or one VM that fits nowhere would hold every move back.
func settled(s *State, now time.Time) bool {
	for _, h := range s.Hosts {
		if h.State == HostSuspect {
			return false
		}
	}
	var free []string
	for _, name := range sortedKeys(s.VMs) {
		vm := s.VMs[name]
		if !placeable(vm) {
			continue
		}
		if vm.Migrating != nil {
			return false
		}
		if vm.Host == "" {
			if ok, _, _ := s.mayMove(vm, now); !ok {
				return false
			}
			free = append(free, name)
		}
	}
	return len(free) == 0 || len(Place(s, free, now).Assign) == 0
}

func (p *planner) add(a Action) {
	if a.Kind == ActRelease || a.Kind == ActMigrate {
		if p.leaving == nil {
			p.leaving = map[string]bool{}
		}
		p.leaving[a.VM] = true
	}
	p.out = append(p.out, a)
}

// host decides about one host: suspect it when it has been silent too long,
// fence it while it is suspect.
func (p *planner) host(h *Host) {
	if h.Witness && h.State != HostOnline && h.State != HostMaintenance && h.State != HostSuspect {
		return
	}
	t, silence := p.s.Timings, p.s.silence(h, p.now)
	switch h.State {
	case HostOnline, HostMaintenance:
		dead := t.DeadTime
		if !h.LastRenewal.After(p.s.LeaderSince) {
			// Not heard from since this leader started: it may be booting
			// or finding the new leader.
			dead = max(dead, t.InitDead)
		}
		if silence > dead {
			p.add(Action{Kind: ActSuspect, Host: h.ID, Epoch: h.Epoch, Reason: "silent for " + silence.String()})
		}
	case HostSuspect:
		if t.WatchdogTimeout > 0 && silence > t.Lease+t.WatchdogTimeout {
			p.add(Action{Kind: ActSelfFence, Host: h.ID, Epoch: h.Epoch,
				Reason: fmt.Sprintf("silent for %v, past Lease %v + WatchdogTimeout %v: its watchdog has reset it", silence, t.Lease, t.WatchdogTimeout)})
			return
		}
		if p.now.Before(h.Fence.RetryAt) {
			p.add(Action{Kind: ActWait, Host: h.ID, Until: h.Fence.RetryAt, Reason: "fence retry"})
		} else {
			p.add(Action{Kind: ActFence, Host: h.ID, Epoch: h.Epoch, Round: h.Fence.Rounds + 1})
		}
		if t.EscalateAfter > 0 && h.Fence.Rounds >= t.EscalateAfter && !h.Fence.Escalated {
			p.add(Action{Kind: ActEscalate, Host: h.ID, Epoch: h.Epoch,
				Reason: fmt.Sprintf("%d fence rounds failed: power the host off and acknowledge it", h.Fence.Rounds)})
		}
	}
}

// vm decides about one VM: whether it needs a host, may have one, or must
// move off the one it has.
func (p *planner) vm(vm *VM) {
	if !placeable(vm) {
		return
	}
	h := p.s.Hosts[vm.Host]
	gone := vm.Host == "" || h == nil || h.State == HostLeft || h.Epoch > vm.OwnerEpoch
	switch {
	case vm.Migrating != nil && !gone:
		// The hypervisors are handing it over.
	case gone:
		p.homeless(vm, h)
	default:
		p.onHealthyHost(vm, h)
	}
}

// homeless decides about a VM that has no host, or whose host is gone or
// was fenced: it is placed once its last host can no longer run it.
func (p *planner) homeless(vm *VM, h *Host) {
	ok, until, why := p.s.mayMove(vm, p.now)
	switch {
	case !ok && until.IsZero() && h != nil && h.State == HostSuspect:
		// The fence of its host comes first.
	case !ok:
		p.add(Action{Kind: ActWait, VM: vm.Name, Until: until, Reason: why})
	case vm.Migrating != nil:
		p.migrationTarget(vm, vm.Migrating)
	default:
		p.want = append(p.want, vm.Name)
	}
}

// onHealthyHost decides about a VM on a host that holds it at its epoch.
func (p *planner) onHealthyHost(vm *VM, h *Host) {
	switch {
	case h.State == HostSuspect:
		// Fence first; nothing to decide yet.
	case h.State == HostMaintenance:
		p.drain(vm, h, "host "+h.ID+" in maintenance", true)
	case vm.Observed.Host == h.ID && vm.Observed.View >= vm.Assignment && (vm.Observed.State == Crashed || vm.Observed.State == Stopped):
		// Before any wish to move it: a VM that is down is brought back
		// first, and moves later.
		p.stoppedOnHealthyHost(vm, h)
	case vm.MoveTo != "" && vm.MoveTo != h.ID:
		if p.settled {
			p.operatorMove(vm, h)
		}
	case p.storageLost(vm, h) != "":
		p.drain(vm, h, p.storageLost(vm, h), false)
	case vm.Failback && p.settled:
		p.failback(vm, h)
	}
}

// migrationTarget handles a VM whose source host was fenced mid-migration:
// it may already run on the target, so it goes there, or waits until the
// target is fenced too.
func (p *planner) migrationTarget(vm *VM, mg *Migration) {
	th := p.s.Hosts[mg.To]
	switch {
	case th != nil && th.State == HostOnline && th.Epoch == mg.ToEpoch:
		p.add(Action{Kind: ActAssign, VM: vm.Name, Host: mg.To, Reason: "failover during live migration"})
	case th == nil || th.State == HostLeft || th.Epoch > mg.ToEpoch:
		if ok, until, why := p.s.hostReleased(th, mg.ToEpoch, p.now); !ok {
			p.add(Action{Kind: ActWait, VM: vm.Name, Until: until, Reason: why})
			return
		}
		p.want = append(p.want, vm.Name)
	default:
		p.add(Action{Kind: ActWait, VM: vm.Name, Reason: "it may run on " + mg.To + ", the target of its live migration: fence " + mg.To + " first"})
	}
}

// storageLost says which of vm's storage pools h no longer reaches.
func (p *planner) storageLost(vm *VM, h *Host) string {
	for _, id := range vm.Volumes {
		if v := p.s.Volumes[id]; v != nil && v.Pool != "" && slices.Contains(h.Lost, v.Pool) {
			return "host " + h.ID + " lost storage pool " + v.Pool
		}
	}
	return ""
}

// target is where vm would go if it left h now.
func (p *planner) target(vm *VM, h *Host) (string, string) {
	c := newRound(p.s, map[string]bool{vm.Name: true})
	c.avoid[vm.Name] = h.ID
	r, why := c.pick(vm)
	if r == nil {
		return "", why
	}
	return r.h.ID, ""
}

// drain moves vm off a healthy host h: live when both hypervisors can and it
// has no cluster volumes, by stop and start otherwise. Without a target it
// is stopped anyway when always is set (maintenance, an operator's move),
// and left where it is otherwise.
func (p *planner) drain(vm *VM, h *Host, reason string, always bool) {
	to, why := p.target(vm, h)
	if to == "" && !always {
		if r := reason + ": " + why; r != vm.Pending {
			p.add(Action{Kind: ActPending, VM: vm.Name, Host: h.ID, Reason: r})
		}
		return
	}
	if to != "" && !vm.MigrateFailed && len(vm.Volumes) == 0 && h.LiveMigrate && p.s.Hosts[to].LiveMigrate {
		p.add(Action{Kind: ActMigrate, VM: vm.Name, Host: h.ID, To: to, Reason: reason})
		return
	}
	// The target is only where it would go now: several VMs drained at once
	// are placed together, so each keeps only an operator's target.
	p.add(Action{Kind: ActRelease, VM: vm.Name, Host: h.ID, To: vm.MoveTo, Reason: reason})
}

// operatorMove moves vm to the host an operator named, once that host can
// take it. Stopping it before would only start it again where placement
// finds room, and then move it again: a loop of outages.
func (p *planner) operatorMove(vm *VM, h *Host) {
	c := newRound(p.s, map[string]bool{vm.Name: true})
	why := "it is not a member that runs VMs"
	if r := c.rooms[vm.MoveTo]; r != nil {
		why = c.reject(vm, r)
	}
	if why != "" {
		if r := "migration to " + vm.MoveTo + " waits: " + vm.MoveTo + " " + why; r != vm.Pending {
			p.add(Action{Kind: ActPending, VM: vm.Name, Host: h.ID, Reason: r})
		}
		return
	}
	p.drain(vm, h, "migration to "+vm.MoveTo, true)
}

// stoppedOnHealthyHost restarts a VM where it stopped while restarts are
// left, and relocates it after.
func (p *planner) stoppedOnHealthyHost(vm *VM, h *Host) {
	if vm.LocalRestarts < vm.MaxLocalRestarts {
		p.add(Action{Kind: ActRestart, VM: vm.Name, Host: h.ID, Reason: fmt.Sprintf("%s, restart %d of %d", vm.Observed.State, vm.LocalRestarts+1, vm.MaxLocalRestarts)})
		return
	}
	to, why := p.target(vm, h)
	if to == "" {
		if r := fmt.Sprintf("%s on %s with no local restart left; %s", vm.Observed.State, h.ID, why); r != vm.Pending {
			p.add(Action{Kind: ActPending, VM: vm.Name, Host: h.ID, Reason: r})
		}
		return
	}
	p.add(Action{Kind: ActRelease, VM: vm.Name, Host: h.ID, To: to, Reason: fmt.Sprintf("%s %d times on %s", vm.Observed.State, vm.LocalRestarts+1, h.ID)})
}

// failback moves a running VM to a host it prefers to its own (by move-to,
// node affinity and preferred hosts; never for load) once that host can
// take it.
func (p *planner) failback(vm *VM, h *Host) {
	if vm.Observed.Host != h.ID || vm.Observed.State != Running {
		return
	}
	c := newRound(p.s, map[string]bool{vm.Name: true})
	best, _ := c.pick(vm)
	cur := c.rooms[h.ID]
	if best == nil || cur == nil || best == cur || c.compare(vm, best, cur, preferenceScorers) <= 0 {
		return
	}
	p.drain(vm, h, "failback to "+best.h.ID, false)
}

// place places the VMs that need a host, in start order.
func (p *planner) place() {
	if len(p.want) == 0 {
		return
	}
	pl := Place(p.s, p.want, p.now)
	for _, name := range pl.Evict {
		if p.leaving[name] {
			continue // already on its way out: its room comes free anyway
		}
		vm := p.s.VMs[name]
		p.add(Action{Kind: ActRelease, VM: name, Host: vm.Host, Reason: "stopped to make room for a restart VM"})
	}
	for _, a := range pl.Assign {
		p.add(Action{Kind: ActAssign, VM: a.VM, Host: a.Host})
	}
	for _, name := range sortedKeys(pl.Delayed) {
		p.add(Action{Kind: ActWait, VM: name, Until: pl.Delayed[name], Reason: "start delay"})
	}
	for _, name := range sortedKeys(pl.Unplaced) {
		if why := pl.Unplaced[name]; why != p.s.VMs[name].Pending {
			p.add(Action{Kind: ActPending, VM: name, Reason: why})
		}
	}
}

// mayMove reports whether vm may be given to a host other than the one it
// has (or last ran on), and if not, until when (zero: until an event) and
// why. It is where fence-before-recover lives, for Plan and for the
// transitions alike.
func (s *State) mayMove(vm *VM, now time.Time) (bool, time.Time, string) {
	if vm.Host != "" {
		h := s.Hosts[vm.Host]
		if h != nil && h.State != HostLeft && h.Epoch <= vm.OwnerEpoch {
			return false, time.Time{}, fmt.Sprintf("on %s (%s) at its epoch %d: fence it or release the VM first", h.ID, h.State, h.Epoch)
		}
		return s.hostReleased(h, vm.OwnerEpoch, now)
	}
	o := vm.Observed
	if o.Host == "" {
		return true, time.Time{}, ""
	}
	oh := s.Hosts[o.Host]
	if oh == nil || oh.State == HostLeft || oh.Epoch > vm.OwnerEpoch {
		return s.hostReleased(oh, vm.OwnerEpoch, now)
	}
	if o.State == Running || o.State == RunUnknown {
		return false, time.Time{}, fmt.Sprintf("still %s on %s: wait until it stopped there", orUnknown(o.State), o.Host)
	}
	if o.View < vm.Released {
		return false, time.Time{}, fmt.Sprintf("%s has not reported it stopped since it was released", o.Host)
	}
	return true, time.Time{}, ""
}

func orUnknown(st RunState) string {
	if st == RunUnknown {
		return "in an unknown state"
	}
	return string(st)
}

// hostReleased reports whether host h, which ran a VM at epoch, can no
// longer run it: it left and was silent past ReassignAfter, registered again
// after a fence (which destroyed what it ran), or was fenced with a proof
// that allows it by now.
func (s *State) hostReleased(h *Host, epoch uint64, now time.Time) (bool, time.Time, string) {
	if h == nil {
		return true, time.Time{}, ""
	}
	t := s.Timings
	from := s.LeaderSince
	if h.LastRenewal.After(from) {
		from = h.LastRenewal
	}
	leaseOut := from.Add(t.ReassignAfter)
	switch {
	case h.State == HostLeft:
		if now.After(leaseOut) {
			return true, time.Time{}, ""
		}
		return false, leaseOut, h.ID + " left and may run it under its lease"
	case h.Epoch <= epoch:
		return false, time.Time{}, "fence of " + h.ID
	case h.State != HostFenced:
		return true, time.Time{}, "" // registered again: it destroyed what it ran
	}
	var proof Proof
	found := false
	for i := len(s.Proofs) - 1; i >= 0; i-- {
		if pr := s.Proofs[i]; pr.Host == h.ID && pr.Epoch >= epoch && pr.Kind.Counts() {
			proof, found = pr, true
			break
		}
	}
	if !found {
		return false, time.Time{}, h.ID + " is fenced but no counting proof is recorded"
	}
	switch proof.Kind {
	case ProofVerifiedOff:
		return true, time.Time{}, ""
	case ProofSelfFence:
		if w := from.Add(t.Lease + t.WatchdogTimeout); w.After(leaseOut) {
			leaseOut = w
		}
	}
	if now.After(leaseOut) {
		return true, time.Time{}, ""
	}
	return false, leaseOut, fmt.Sprintf("%s proof for %s: its lease may still run", proof.Kind, h.ID)
}

// incidentDone reports whether every VM of an open incident runs again on
// another host, or no longer wants to run, with its host no longer suspect.
func (s *State) incidentDone(inc *Incident) bool {
	if !inc.Closed.IsZero() {
		return false
	}
	if h := s.Hosts[inc.Host]; h != nil && h.State == HostSuspect {
		return false
	}
	for _, name := range inc.VMs {
		vm := s.VMs[name]
		if !placeable(vm) {
			continue
		}
		if vm.Host == "" || vm.Host == inc.Host || vm.Observed.Host != vm.Host || vm.Observed.State != Running {
			return false
		}
	}
	return true
}
