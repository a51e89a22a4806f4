package ha

import (
	"cmp"
	"time"

	"github.com/xenha/xenha/ha/internal/pool"
)

// Placement decides where VMs run. It is a pure function of the replicated
// state, so that a new leader that re-runs it mid-incident reaches the same
// answer as the old one, and so that every rule can be table-tested.

// Assignment is one placement decision.
type Assignment struct {
	VM   string `json:"vm"`
	Host string `json:"host"`
}

// Placement is the outcome of one placement round.
type Placement struct {
	// Assign lists decisions in start order: restart before best-effort,
	// higher Priority first, then lower Order, then name.
	Assign []Assignment
	// Unplaced maps a VM that found no host to the reason, for VM.Pending and
	// the operator.
	Unplaced map[string]string
	// Evict lists best-effort VMs to stop so that an unplaced restart VM
	// fits (RestartAlways makes room); it is placed once they stopped.
	Evict []string
}

// eligibleHost reports whether h may receive VMs: witnesses never, and only
// online hosts (never suspect, fenced, maintenance, joining or left).
func eligibleHost(h *Host) bool {
	return h != nil && h.Role != RoleWitness && h.State == HostOnline
}

// placeable reports whether vm wants a host: not stopped by the operator and
// with a policy that restarts it.
func placeable(vm *VM) bool {
	return vm != nil && !vm.Stopped && vm.Policy.Restart != RestartOff
}

// placementLess orders VMs for placement and start.
func placementLess(a, b *VM) int {
	rank := func(v *VM) int {
		if v.Policy.Restart == RestartAlways {
			return 0
		}
		return 1
	}
	return cmp.Or(
		cmp.Compare(rank(a), rank(b)),
		cmp.Compare(b.Policy.Priority, a.Policy.Priority),
		cmp.Compare(a.Policy.Order, b.Policy.Order),
		cmp.Compare(a.Name, b.Name),
	)
}

// place decides hosts for the VMs named in want, given everything else in s
// as fixed. A VM in want that currently has a host is treated as moving: its
// old host's room is not charged for it. Names in want that are not in s, or
// that are not placeable, are ignored. s is not modified. The decision is
// the pool model's (filter → score → pick, see ha/internal/pool); this
// only translates the replicated state into it and back.
func place(s *State, want []string) Placement {
	p := pool.Place(poolView(s), want, time.Time{})
	out := Placement{Unplaced: p.Unplaced, Evict: p.Evict}
	for _, a := range p.Assign {
		out.Assign = append(out.Assign, Assignment{VM: a.VM, Host: a.Host})
	}
	return out
}

// poolView is what placement needs of s, in the pool model's terms. Only
// placement reads it, so VMs carry no more than placement looks at: an
// active observation counts as running, wherever it was made.
func poolView(s *State) *pool.State {
	ps := &pool.State{Hosts: make(map[string]*pool.Host, len(s.Hosts)), VMs: make(map[string]*pool.VM, len(s.VMs))}
	vms := make([]pool.VM, 0, len(s.VMs)) // one allocation for all
	for id, h := range s.Hosts {
		ps.Hosts[id] = &pool.Host{
			ID: id, State: pool.HostState(h.State), Epoch: h.Epoch, Witness: h.Role == RoleWitness,
			MemKiB: int64(h.Capacity.MemoryKiB), CPUs: h.Capacity.VCPUs,
		}
	}
	for name, vm := range s.VMs {
		vms = append(vms, pool.VM{
			Name: name, Restart: pool.Restart(vm.Policy.Restart), Priority: vm.Policy.Priority, Order: vm.Policy.Order,
			MemKiB: int64(vm.Spec.MemoryKiB), CPUs: vm.Spec.VCPUs, AntiAffinity: vm.Policy.AntiAffinity,
			Preferred: vm.Policy.Preferred, Stopped: vm.Stopped,
			Host: vm.Host, OwnerEpoch: vm.OwnerEpoch, MoveTo: vm.MoveTo,
		})
		pv := &vms[len(vms)-1]
		if vm.Observed.State.Active() {
			pv.Observed = pool.Observed{Host: vm.Observed.Host, State: pool.Running}
		}
		ps.VMs[name] = pv
	}
	return ps
}
