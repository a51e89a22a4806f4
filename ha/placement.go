package ha

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
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

// hostRoom is what is left on one host while a round places VMs.
type hostRoom struct {
	id       string
	memFree  int64 // KiB; math on signed values so over-commit shows as negative
	cpuFree  int
	memLimit bool // always true: a host's capacity bounds what it gets
	cpuLimit bool
	unknown  bool // the host reported no memory or no vCPUs: it gets nothing
	groups   map[string]bool
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
// that are not placeable, are ignored. s is not modified.
func place(s *State, want []string) Placement {
	out := Placement{Unplaced: map[string]string{}}
	moving := map[string]bool{}
	var vms []*VM
	for _, name := range want {
		vm := s.VMs[name]
		if !placeable(vm) || moving[name] {
			continue
		}
		moving[name] = true
		vms = append(vms, vm)
	}
	if len(vms) == 0 {
		return out
	}
	slices.SortFunc(vms, placementLess)

	room := map[string]*hostRoom{}
	var ids []string
	for id, h := range s.Hosts {
		if !eligibleHost(h) {
			continue
		}
		room[id] = &hostRoom{
			id:       id,
			memFree:  int64(h.Capacity.MemoryKiB),
			cpuFree:  h.Capacity.VCPUs,
			memLimit: true,
			cpuLimit: true,
			unknown:  h.Capacity.MemoryKiB == 0 || h.Capacity.VCPUs <= 0,
			groups:   map[string]bool{},
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// Charge every VM that stays where it is, so that room means real room;
	// one taken off a host that still runs it is charged there until it
	// stopped.
	for name, vm := range s.VMs {
		at := vm.Host
		if at == "" && vm.Observed.State.Active() {
			at = vm.Observed.Host
		}
		if moving[name] || at == "" || (vm.Stopped && !vm.Observed.State.Active()) {
			continue
		}
		r := room[at]
		if r == nil {
			continue
		}
		r.memFree -= int64(vm.Spec.MemoryKiB)
		r.cpuFree -= vm.Spec.VCPUs
		if g := vm.Policy.AntiAffinity; g != "" {
			r.groups[g] = true
		}
	}

	evicted := map[string]bool{}
	for _, vm := range vms {
		// A VM relocated from a healthy host (it kept crashing there) must
		// land elsewhere; one whose host was fenced and came back at a new
		// epoch may return to it.
		avoid := ""
		if h := s.Hosts[vm.Host]; h != nil && vm.OwnerEpoch == h.Epoch {
			avoid = vm.Host
		}
		host, reason := pick(vm, room, ids, avoid)
		if host == nil {
			if vm.Policy.Restart == RestartAlways {
				if h, victims := makeRoom(s, vm, room, ids, avoid, moving, evicted); h != "" {
					for _, v := range victims {
						evicted[v] = true
					}
					out.Evict = append(out.Evict, victims...)
					if len(victims) > 0 {
						reason = fmt.Sprintf("making room on %s by stopping best-effort VMs %s", h, strings.Join(victims, ", "))
					} else {
						reason = fmt.Sprintf("making room on %s: waiting for VMs leaving it to stop", h)
					}
				}
			}
			out.Unplaced[vm.Name] = reason
			continue
		}
		host.memFree -= int64(vm.Spec.MemoryKiB)
		host.cpuFree -= vm.Spec.VCPUs
		if g := vm.Policy.AntiAffinity; g != "" {
			host.groups[g] = true
		}
		out.Assign = append(out.Assign, Assignment{VM: vm.Name, Host: host.id})
	}
	return out
}

// pick chooses a host for vm: the first preferred host that fits, else the
// host with the most free memory (spreading load, ties by name). It returns
// nil and a reason a person can act on when none fits.
func pick(vm *VM, room map[string]*hostRoom, ids []string, avoid string) (*hostRoom, string) {
	if avoid != "" {
		ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == avoid })
	}
	if len(ids) == 0 {
		return nil, "no eligible host: every host is a witness or is suspect, fenced, in maintenance or not yet online"
	}
	var fits []*hostRoom
	var unknown, noMem, noCPU, grouped int
	for _, id := range ids {
		r := room[id]
		switch {
		case r.unknown:
			unknown++
		case r.memLimit && r.memFree < int64(vm.Spec.MemoryKiB):
			noMem++
		case r.cpuLimit && r.cpuFree < vm.Spec.VCPUs:
			noCPU++
		case vm.Policy.AntiAffinity != "" && r.groups[vm.Policy.AntiAffinity]:
			grouped++
		default:
			fits = append(fits, r)
		}
	}
	if len(fits) == 0 {
		var why []string
		if unknown > 0 {
			why = append(why, fmt.Sprintf("%d host(s) report no memory or vCPUs (capacity unknown: check the hypervisor's host info)", unknown))
		}
		if noMem > 0 {
			why = append(why, fmt.Sprintf("%d host(s) lack %d MiB of free memory", noMem, vm.Spec.MemoryKiB/1024))
		}
		if noCPU > 0 {
			why = append(why, fmt.Sprintf("%d host(s) lack %d free vCPUs", noCPU, vm.Spec.VCPUs))
		}
		if grouped > 0 {
			why = append(why, fmt.Sprintf("%d host(s) already run a VM of anti-affinity group %q", grouped, vm.Policy.AntiAffinity))
		}
		return nil, "no capacity: " + strings.Join(why, ", ") + "; waiting for room (add a host, stop a VM or lower its size)"
	}
	for _, p := range append([]string{vm.MoveTo}, vm.Policy.Preferred...) {
		for _, r := range fits {
			if r.id == p {
				return r, ""
			}
		}
	}
	best := fits[0]
	for _, r := range fits[1:] {
		if score(r) > score(best) {
			best = r
		}
	}
	return best, ""
}

// score ranks hosts by free memory; hosts without a declared limit rank by
// free vCPUs, and last.
func score(r *hostRoom) int64 {
	if !r.memLimit {
		return int64(r.cpuFree) - 1<<62
	}
	return r.memFree
}

// makeRoom finds the host where stopping the fewest best-effort VMs (lowest
// priority first) lets vm fit, and returns it with those VMs; "" if none.
// A host where VMs already leaving make enough room comes with no victims.
func makeRoom(s *State, vm *VM, room map[string]*hostRoom, ids []string, avoid string, moving, evicted map[string]bool) (string, []string) {
	bestHost, best := "", []string(nil)
	for _, id := range ids {
		if id == avoid {
			continue
		}
		r := room[id]
		if r.unknown || (vm.Policy.AntiAffinity != "" && r.groups[vm.Policy.AntiAffinity]) {
			continue
		}
		var cands []*VM
		for name, o := range s.VMs {
			if o.Host == id && !moving[name] && !evicted[name] && !o.Stopped && o.Policy.Restart == RestartBestEffort {
				cands = append(cands, o)
			}
		}
		slices.SortFunc(cands, func(a, b *VM) int {
			return cmp.Or(cmp.Compare(a.Policy.Priority, b.Policy.Priority), cmp.Compare(a.Name, b.Name))
		})
		mem, cpu := r.memFree, r.cpuFree
		// VMs already leaving this host (evicted or released, still
		// stopping) will free their room: count it, and evict no more.
		for _, o := range s.VMs {
			if o.Host == "" && o.Observed.Host == id && o.Observed.State.Active() {
				mem += int64(o.Spec.MemoryKiB)
				cpu += o.Spec.VCPUs
			}
		}
		var victims []string
		for _, c := range cands {
			if (!r.memLimit || mem >= int64(vm.Spec.MemoryKiB)) && (!r.cpuLimit || cpu >= vm.Spec.VCPUs) {
				break
			}
			mem += int64(c.Spec.MemoryKiB)
			cpu += c.Spec.VCPUs
			victims = append(victims, c.Name)
		}
		fits := (!r.memLimit || mem >= int64(vm.Spec.MemoryKiB)) && (!r.cpuLimit || cpu >= vm.Spec.VCPUs)
		if fits && (bestHost == "" || len(victims) < len(best)) {
			bestHost, best = id, victims
		}
	}
	return bestHost, best
}
