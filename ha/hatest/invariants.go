package hatest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/netguard"
)

// Invariants samples the world continuously while a test runs and records
// every violation of xenha's safety rules:
//
//   - single runner: a VM's domain is active on at most one host;
//   - fence before recover: when a VM starts running on a host other than
//     the one it last ran on, and that host is powered off, a fence record
//     for that host at (at least) the epoch it ran the VM under is committed;
//   - single network owner: a VM's MACs pass the guard of at most one
//     powered-on host;
//   - proof decides the wait: a VM that runs on a new host after its last
//     host was fenced does so before that host's lease could have run out
//     (Lease after the last renewal the incident records) only if the
//     fence record is a verified power-off, and a verified power-off is
//     true: the host was powered off when the proof was taken.
//
// Start it with World.CheckInvariants; it stops and reports when the test
// ends.
type Invariants struct {
	w    *World
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	violations []string
	samples    int
	last       map[string]runAt // VM → where it last ran
	state      *ha.State        // the freshest replicated state read
	// pausedWhileElsewhere: VM → hosts that held a paused copy while the VM
	// executed elsewhere; that copy must never execute again.
	pausedWhileElsewhere map[string]map[string]bool
}

type runAt struct {
	host  string
	epoch uint64
}

// CheckInvariants starts the checker; the test fails at its end if any
// sample broke a rule.
func (w *World) CheckInvariants(t interface {
	Cleanup(func())
	Errorf(string, ...any)
	Logf(string, ...any)
	Helper()
}) *Invariants {
	inv := &Invariants{w: w, stop: make(chan struct{}), done: make(chan struct{}), last: map[string]runAt{},
		pausedWhileElsewhere: map[string]map[string]bool{}}
	go inv.run()
	t.Cleanup(func() {
		inv.Stop()
		if v := inv.Violations(); len(v) > 0 {
			t.Errorf("hatest: %d invariant violations in %d samples; first ones:\n%s", len(v), inv.Samples(), fmt.Sprint(v[:min(len(v), 10)]))
		} else {
			t.Logf("hatest: invariants held in %d samples", inv.Samples())
		}
	})
	return inv
}

// Stop ends sampling (idempotent).
func (inv *Invariants) Stop() {
	select {
	case <-inv.stop:
	default:
		close(inv.stop)
	}
	<-inv.done
}

// Violations returns what was found so far.
func (inv *Invariants) Violations() []string {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return slices.Clone(inv.violations)
}

// Samples is how many samples were taken.
func (inv *Invariants) Samples() int {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.samples
}

func (inv *Invariants) run() {
	defer close(inv.done)
	for {
		select {
		case <-inv.stop:
			return
		default:
		}
		inv.sample()
		time.Sleep(time.Millisecond)
	}
}

func (inv *Invariants) fail(format string, args ...any) {
	inv.violations = append(inv.violations, fmt.Sprintf(time.Now().Format("15:04:05.000 ")+format, args...))
}

func (inv *Invariants) sample() {
	w := inv.w
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.samples++
	// The hypervisors and guards are read on every sample (cheap); the
	// replicated state only every few samples and whenever a VM moved.
	if inv.state == nil || inv.samples%100 == 0 {
		if s := w.freshestState(); s != nil {
			inv.state = s
		}
	}
	for _, vm := range w.Hyper.DoubleRunners() {
		inv.fail("single runner: VM %s is active on %v", vm, w.Hyper.Running(vm))
	}
	s := inv.state
	if s == nil {
		return
	}
	guards := map[string]netguard.State{}
	for _, id := range w.hostIDs() {
		if h := w.Host(id); h.Guard != nil && !w.Killed(id) {
			guards[id] = h.Guard.State()
		}
	}
	// A VM that runs but is not in the state read yet (it was just added)
	// is tracked too: it may move before the next read.
	names := slices.Sorted(mapKeys(s.VMs))
	for _, name := range w.Hyper.Executing() {
		if s.VMs[name] == nil {
			names = append(names, name)
		}
	}
	for _, name := range names {
		vm := s.VMs[name]
		on := w.Hyper.Running(name)
		inv.checkPaused(name, on)
		if len(on) == 1 {
			host := on[0]
			prev, seen := inv.last[name]
			if seen && prev.host != host {
				if fresh := w.freshestState(); fresh != nil && fresh.Index > s.Index {
					inv.state, s = fresh, fresh
					vm = s.VMs[name]
				}
				if w.Killed(prev.host) && !fencedAt(s, prev.host, prev.epoch) {
					inv.fail("fence before recover: VM %s runs on %s after %s (epoch %d) died, with no fence record for %s at epoch >= %d",
						name, host, prev.host, prev.epoch, prev.host, prev.epoch)
				}
				inv.checkProofWait(s, name, prev, host)
			}
			epoch := prev.epoch
			if vm != nil && vm.Host == host {
				epoch = vm.OwnerEpoch
			} else if !seen || prev.host != host {
				if h := s.Hosts[host]; h != nil {
					epoch = h.Epoch
				}
			}
			inv.last[name] = runAt{host: host, epoch: epoch}
		}
		if vm == nil {
			continue
		}
		for _, m := range vm.Spec.MACs {
			mac, err := net.ParseMAC(m)
			if err != nil {
				continue
			}
			var owners []string
			for _, id := range slices.Sorted(mapKeys(guards)) {
				if allowed, guarded := guards[id].Allowed(mac); allowed && guarded {
					owners = append(owners, id)
				}
			}
			if len(owners) > 1 {
				inv.fail("single network owner: VM %s MAC %s passes on %v", name, m, owners)
			}
		}
	}
}

// checkPaused records paused copies of vm held while it executes elsewhere,
// and fails if such a copy executes again.
func (inv *Invariants) checkPaused(vm string, executing []string) {
	active := inv.w.Hyper.Active(vm)
	marks := inv.pausedWhileElsewhere[vm]
	for host := range marks {
		if !slices.Contains(active, host) {
			delete(marks, host) // destroyed or powered off: harmless now
		} else if slices.Contains(executing, host) {
			inv.fail("paused copy resumed: VM %s executes on %s again after it ran elsewhere", vm, host)
			delete(marks, host)
		}
	}
	if len(executing) == 0 {
		return
	}
	for _, host := range active {
		if !slices.Contains(executing, host) {
			if marks == nil {
				marks = map[string]bool{}
				inv.pausedWhileElsewhere[vm] = marks
			}
			marks[host] = true
		}
	}
}

// checkProofWait checks the proof behind vm's move from prev to host (now):
// see Invariants.
func (inv *Invariants) checkProofWait(s *ha.State, vm string, prev runAt, host string) {
	var rec *ha.FenceRecord
	for i := range s.Fences {
		if f := &s.Fences[i]; f.Host == prev.host && f.Epoch >= prev.epoch {
			rec = f
		}
	}
	if rec == nil {
		return // no fence: the host left or reported the VM stopped
	}
	if rec.Proof == fence.ProofVerifiedOff.String() {
		if !inv.w.offAt(prev.host, rec.Time) {
			inv.fail("proof decides the wait: VM %s moved to %s on a verified power-off of %s at %s, but %s had power then",
				vm, host, prev.host, rec.Time.Format("15:04:05.000"), prev.host)
		}
		return
	}
	var inc *ha.Incident
	for _, i := range s.Incidents {
		if i.Host == prev.host && i.Epoch == rec.Epoch && len(i.Phases) > 0 {
			inc = i
		}
	}
	if inc == nil {
		return
	}
	lease := inv.w.Config(inv.w.Index(prev.host)).Lease
	if end := inc.Phases[0].Start.Add(lease); time.Now().Before(end) {
		inv.fail("proof decides the wait: VM %s runs on %s %v before the lease of %s (last renewal %s + Lease %v) ran out, on a %q proof",
			vm, host, end.Sub(time.Now()).Round(time.Millisecond), prev.host, inc.Phases[0].Start.Format("15:04:05.000"), lease, rec.Proof)
	}
}

// fencedAt reports whether s holds a fence record for host at epoch or later.
func fencedAt(s *ha.State, host string, epoch uint64) bool {
	for _, f := range s.Fences {
		if f.Host == host && f.Epoch >= epoch {
			return true
		}
	}
	return false
}

func (w *World) hostIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(mapKeys(w.hosts))
}

// freshestState reads every running member and returns the state with the
// highest applied index, so that a committed fence record is seen as soon
// as any member applied it.
func (w *World) freshestState() *ha.State {
	var best *ha.State
	for _, i := range w.Running() {
		m := w.Member(i)
		if m == nil {
			continue
		}
		s, err := m.State(context.Background(), ha.Stale)
		if err != nil || s == nil {
			continue
		}
		if best == nil || s.Index > best.Index {
			best = s
		}
	}
	return best
}
