package pool

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// The transitions: the only ways the state changes. Each checks first and
// changes after, so a refusal leaves the state as it was, and each bumps
// Index. They refuse what would break a safety rule whoever asks: an old
// epoch, a VM given away from a host that may still run it.

// ErrRefused wraps every refusal.
var ErrRefused = errors.New("pool: refused")

// ErrStaleEpoch is the refusal of anything a host says at an epoch older
// than its own: it was fenced since.
var ErrStaleEpoch = errors.New("pool: stale epoch")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

func (s *State) hostAt(id string, epoch uint64) (*Host, error) {
	h := s.Hosts[id]
	if h == nil {
		return nil, refuse("host %s is not a member", id)
	}
	if epoch != h.Epoch {
		return nil, fmt.Errorf("%w: %w: host %s at epoch %d, the pool at %d: destroy its VMs and register again", ErrRefused, ErrStaleEpoch, id, epoch, h.Epoch)
	}
	return h, nil
}

func (s *State) vmNamed(name string) (*VM, error) {
	vm := s.VMs[name]
	if vm == nil {
		return nil, refuse("no VM %s", name)
	}
	return vm, nil
}

// Renew applies a host's lease renewal at now (the leader's clock).
func (s *State) Renew(host string, epoch uint64, now time.Time) error {
	h, err := s.hostAt(host, epoch)
	if err != nil {
		return err
	}
	if h.State == HostFenced || h.State == HostLeft {
		return refuse("host %s is %s: it must register first", host, h.State)
	}
	if h.State == HostJoining {
		h.State = HostOnline
	}
	if h.State == HostSuspect {
		h.State = HostOnline
		h.Fence = FenceStatus{}
		if inc := s.openIncident(host, epoch); inc != nil {
			inc.Notes = append(inc.Notes, "renewed before it was fenced: nothing moved")
			inc.Closed = now
		}
	}
	h.LastRenewal = now
	s.Index++
	return nil
}

// Register brings a joining host, or a fenced one that destroyed all it ran,
// online at epoch.
func (s *State) Register(host string, epoch uint64, now time.Time) error {
	h, err := s.hostAt(host, epoch)
	if err != nil {
		return err
	}
	switch h.State {
	case HostJoining, HostFenced:
		h.State, h.Fence, h.LastRenewal = HostOnline, FenceStatus{}, now
	case HostLeft:
		return refuse("host %s left the pool: join it again", host)
	}
	s.Index++
	return nil
}

// Leave removes a host from the pool. It is not fenced: its VMs move once
// it has been silent past ReassignAfter, by when its lease has run out.
func (s *State) Leave(host string) error {
	h := s.Hosts[host]
	if h == nil {
		return refuse("host %s is not a member", host)
	}
	h.State = HostLeft
	s.Index++
	return nil
}

// SetMaintenance moves a host between online and maintenance.
func (s *State) SetMaintenance(host string, on bool) error {
	h := s.Hosts[host]
	if h == nil {
		return refuse("host %s is not a member", host)
	}
	switch {
	case on && h.State == HostOnline:
		h.State = HostMaintenance
	case !on && h.State == HostMaintenance:
		h.State = HostOnline
	case on && h.State == HostMaintenance, !on && h.State == HostOnline:
	default:
		return refuse("host %s is %s: maintenance changes only between online and maintenance", host, h.State)
	}
	s.Index++
	return nil
}

// Report applies what host (at epoch, having applied the state up to view)
// says about one VM. A host's word counts for a VM assigned to it or last
// seen on it, and always when it says the VM runs.
func (s *State) Report(host string, epoch, view uint64, name string, st RunState) error {
	if _, err := s.hostAt(host, epoch); err != nil {
		return err
	}
	vm, err := s.vmNamed(name)
	if err != nil {
		return err
	}
	if vm.Host != host && vm.Observed.Host != host && st != Running {
		return nil
	}
	vm.Observed = Observed{Host: host, State: st, View: view}
	s.Index++
	return nil
}

// RecordProof commits a fence proof for a suspect host at its epoch. A proof
// that counts fences the host (its epoch bumps); an unverified one is kept
// as a record and changes nothing else.
func (s *State) RecordProof(p Proof) error {
	h, err := s.hostAt(p.Host, p.Epoch)
	if err != nil {
		return err
	}
	if h.State == HostLeft {
		return refuse("host %s left: nothing to fence", p.Host)
	}
	if p.Kind == ProofOperator && h.State != HostSuspect {
		return refuse("host %s is %s: an operator may acknowledge only a suspect host", p.Host, h.State)
	}
	s.Proofs = append(s.Proofs, p)
	s.Index++
	inc := s.openIncident(p.Host, p.Epoch)
	if !p.Kind.Counts() {
		if inc != nil {
			inc.Notes = append(inc.Notes, fmt.Sprintf("%s proof by %s does not count", p.Kind, p.Method))
		}
		return nil
	}
	if inc != nil {
		inc.Notes = append(inc.Notes, fmt.Sprintf("fenced: %s by %s", p.Kind, p.Method))
	}
	h.Epoch++
	h.State = HostFenced
	h.Fence = FenceStatus{}
	return nil
}

// FenceFailed records a fencing round that proved nothing, and when the next
// may start.
func (s *State) FenceFailed(host string, epoch uint64, now time.Time, why string) error {
	h, err := s.hostAt(host, epoch)
	if err != nil {
		return err
	}
	if h.State != HostSuspect {
		return refuse("host %s is %s, not suspect", host, h.State)
	}
	b := s.Timings.FenceRetry
	wait := b.Initial
	for range h.Fence.Rounds {
		wait = min(time.Duration(float64(wait)*max(b.Factor, 1)), max(b.Max, b.Initial))
	}
	h.Fence.Rounds++
	h.Fence.RetryAt = now.Add(wait)
	if inc := s.openIncident(host, epoch); inc != nil {
		inc.Notes = append(inc.Notes, fmt.Sprintf("fence round %d failed: %s; retry in %v", h.Fence.Rounds, why, wait))
	}
	s.Index++
	return nil
}

// Migrated ends a live migration: the VM is on its target, or (failed)
// still on its source, which then moves it by stop and start.
func (s *State) Migrated(name string, ok bool) error {
	vm, err := s.vmNamed(name)
	if err != nil {
		return err
	}
	mg := vm.Migrating
	if mg == nil {
		return refuse("VM %s is not being migrated", name)
	}
	vm.Migrating = nil
	if ok {
		vm.Host, vm.OwnerEpoch, vm.LocalRestarts, vm.Pending = mg.To, mg.ToEpoch, 0, ""
		vm.Assignment = s.Index + 1
		if vm.MoveTo == mg.To {
			vm.MoveTo = ""
		}
	} else {
		vm.MigrateFailed = true
	}
	s.Index++
	return nil
}

// Apply commits the outcome of one planned action at now. Fence rounds are
// not committed here: their outcome is a proof (RecordProof) or a failure
// (FenceFailed).
func (s *State) Apply(a Action, now time.Time) error {
	var err error
	switch a.Kind {
	case ActSuspect:
		err = s.suspect(a, now)
	case ActSelfFence:
		return s.RecordProof(Proof{Host: a.Host, Epoch: a.Epoch, Kind: ProofSelfFence, Method: "lease-expiry", At: now})
	case ActEscalate:
		if h := s.Hosts[a.Host]; h != nil {
			h.Fence.Escalated = true
		}
	case ActAssign:
		err = s.assign(a, now)
	case ActRestart:
		err = s.restart(a)
	case ActRelease:
		err = s.release(a)
	case ActMigrate:
		err = s.migrate(a)
	case ActPending:
		var vm *VM
		if vm, err = s.vmNamed(a.VM); err == nil {
			vm.Pending = a.Reason
		}
	case ActClose:
		for _, inc := range s.Incidents {
			if inc.Host == a.Host && inc.Epoch == a.Epoch && s.incidentDone(inc) {
				inc.Closed = now
			}
		}
	case ActFence, ActWait:
		return nil
	default:
		return refuse("unknown action %q", a.Kind)
	}
	if err == nil {
		s.Index++
	}
	return err
}

func (s *State) suspect(a Action, now time.Time) error {
	h, err := s.hostAt(a.Host, a.Epoch)
	if err != nil {
		return err
	}
	if h.State != HostOnline && h.State != HostMaintenance {
		return refuse("host %s is %s, not online", a.Host, h.State)
	}
	h.State = HostSuspect
	h.Fence = FenceStatus{}
	inc := &Incident{Host: a.Host, Epoch: a.Epoch, Opened: now}
	for _, name := range sortedKeys(s.VMs) {
		if vm := s.VMs[name]; vm.Host == a.Host && placeable(vm) {
			inc.VMs = append(inc.VMs, name)
		}
	}
	s.Incidents = append(s.Incidents, inc)
	return nil
}

func (s *State) openIncident(host string, epoch uint64) *Incident {
	for i := len(s.Incidents) - 1; i >= 0; i-- {
		if inc := s.Incidents[i]; inc.Host == host && inc.Epoch == epoch && inc.Closed.IsZero() {
			return inc
		}
	}
	return nil
}

func (s *State) assign(a Action, now time.Time) error {
	vm, err := s.vmNamed(a.VM)
	if err != nil {
		return err
	}
	t := s.Hosts[a.Host]
	if t == nil || t.Witness || t.State != HostOnline {
		return refuse("host %s cannot receive VM %s", a.Host, a.VM)
	}
	if vm.Host == a.Host && vm.OwnerEpoch == t.Epoch {
		return nil
	}
	if mg := vm.Migrating; mg != nil && mg.To != a.Host {
		if ok, _, why := s.hostReleased(s.Hosts[mg.To], mg.ToEpoch, now); !ok {
			return refuse("VM %s may run on %s, the target of its live migration: %s", a.VM, mg.To, why)
		}
	} else if mg == nil {
		if ok, _, why := s.mayMove(vm, now); !ok {
			return refuse("VM %s: %s", a.VM, why)
		}
	}
	if vm.Host != a.Host {
		vm.LocalRestarts = 0
		vm.Observed = Observed{}
	}
	vm.Host, vm.OwnerEpoch, vm.Pending, vm.Migrating, vm.MigrateFailed = a.Host, t.Epoch, "", nil, false
	vm.Assignment, vm.AssignedAt = s.Index+1, now
	if vm.MoveTo == a.Host {
		vm.MoveTo = ""
	}
	for _, inc := range s.Incidents {
		if inc.Closed.IsZero() && slices.Contains(inc.VMs, a.VM) {
			inc.Notes = append(inc.Notes, a.VM+" placed on "+a.Host)
		}
	}
	return nil
}

func (s *State) restart(a Action) error {
	vm, err := s.vmNamed(a.VM)
	if err != nil {
		return err
	}
	if vm.Host != a.Host {
		return refuse("VM %s is on %q, not %s", a.VM, vm.Host, a.Host)
	}
	vm.LocalRestarts++
	vm.Observed = Observed{Host: a.Host, State: RunUnknown, View: s.Index + 1}
	return nil
}

func (s *State) release(a Action) error {
	vm, err := s.vmNamed(a.VM)
	if err != nil {
		return err
	}
	if vm.Host != a.Host || vm.Host == "" {
		return refuse("VM %s is on %q, not %s", a.VM, vm.Host, a.Host)
	}
	if vm.Migrating != nil {
		return refuse("VM %s is being live-migrated", a.VM)
	}
	if vm.Observed.Host != a.Host {
		// The host has not reported the VM since it was given it, so it
		// may run it: it must say it stopped it (or be fenced) first.
		vm.Observed = Observed{Host: a.Host, State: RunUnknown}
	}
	vm.Host, vm.Released, vm.MoveTo, vm.Pending = "", s.Index+1, a.To, "moving: "+a.Reason
	return nil
}

func (s *State) migrate(a Action) error {
	vm, err := s.vmNamed(a.VM)
	if err != nil {
		return err
	}
	t := s.Hosts[a.To]
	if vm.Host != a.Host || vm.Migrating != nil || t == nil || t.State != HostOnline || t.Witness {
		return refuse("VM %s cannot migrate from %s to %s now", a.VM, a.Host, a.To)
	}
	vm.Migrating = &Migration{From: a.Host, To: a.To, ToEpoch: t.Epoch}
	return nil
}

// Mark identifies one start of a VM by a host's agent: an agent starts a VM
// assigned to it once per mark, and again only under a new one. The mark
// holds the assignment as well as the restart count: a VM taken off a host
// and given back to it has its count reset to the same value, and must
// still be started (with MaxLocalRestarts 0 no restart grant would ever
// come).
type Mark struct {
	Assignment uint64
	Restarts   int
}

// MarkOf is the mark under which vm would be started now.
func MarkOf(vm *VM) Mark { return Mark{Assignment: vm.Assignment, Restarts: vm.LocalRestarts} }
