package pool

import (
	"fmt"
	"slices"
	"strings"
)

// The placement constraints. A filter says why a host cannot take a VM (""
// when it can); a scorer ranks the hosts that passed every filter. Each is
// one small named unit with its own table test (constraints_test.go), and
// the order of the lists is the order in which they are asked.

// room is one host as a placement round sees it: what is left on it, given
// the VMs that stay and the ones placed earlier in the round.
type room struct {
	h       *Host
	memFree int64 // KiB, signed, so an over-committed host shows negative
	cpuFree int
}

// Filter is one hard constraint.
type Filter struct {
	Name   string
	Reject func(c *round, vm *VM, r *room) string
}

// Scorer is one soft preference: a higher score is a better host.
type Scorer struct {
	Name  string
	Score func(c *round, vm *VM, r *room) int64
}

// Filters are the hard constraints, in the order they are asked.
var Filters = []Filter{
	{"host-state", rejectHostState},
	{"relocation", rejectRelocation},
	{"capacity", rejectCapacity},
	{"host-tags", rejectHostTags},
	{"storage", rejectStorage},
	{"drbd-replica", rejectReplica},
	{"node-affinity", rejectNodeAffinity},
	{"anti-affinity", rejectAntiAffinity},
	{"colocation", rejectColocation},
}

// Scorers rank hosts lexicographically: the first scorer decides, the next
// breaks its ties, and the host name breaks the last ones.
var Scorers = []Scorer{
	{"move-to", scoreMoveTo},
	{"node-affinity", scoreNodeAffinity},
	{"preferred", scorePreferred},
	{"spread", scoreSpread},
}

// refused is what a filter returns in a quiet round: the round only needs
// to know which hosts fit, and says why none does only when none does.
const refused = "refused"

// explain returns why(), or refused in a quiet round: formatting a reason
// for every refused host of every VM cost more than placing them.
func (c *round) explain(why func() string) string {
	if c.quiet {
		return refused
	}
	return why()
}

// preferenceScorers is how many of Scorers express where a VM wants to be
// (rather than load): failback compares hosts on these only.
const preferenceScorers = 3

func rejectHostState(c *round, _ *VM, r *room) string {
	switch {
	case r.h.Witness:
		return "is a witness"
	case r.h.State != HostOnline:
		if c.quiet {
			return refused
		}
		return "is " + string(r.h.State)
	}
	return ""
}

// rejectRelocation keeps a VM that is being relocated off a healthy host
// (it kept stopping there) from landing on that host again.
func rejectRelocation(c *round, vm *VM, r *room) string {
	if c.avoid[vm.Name] == r.h.ID {
		return "is the host it is relocated from"
	}
	return ""
}

func rejectCapacity(c *round, vm *VM, r *room) string {
	if r.h.MemKiB <= 0 || r.h.CPUs <= 0 {
		// A host that reported no memory or no vCPUs has an unknown
		// capacity, not an unlimited one.
		return c.explain(func() string {
			return "reports no memory or vCPUs (capacity unknown: check the hypervisor's host info)"
		})
	}
	memShort := r.memFree < vm.MemKiB
	cpuShort := r.cpuFree < vm.CPUs
	if !memShort && !cpuShort {
		return ""
	}
	if c.quiet {
		return refused
	}
	var why []string
	if memShort {
		why = append(why, fmt.Sprintf("%d MiB free of the %d needed", max(r.memFree, 0)/1024, vm.MemKiB/1024))
	}
	if cpuShort {
		why = append(why, fmt.Sprintf("%d vCPUs free of the %d needed", max(r.cpuFree, 0), vm.CPUs))
	}
	return "has " + strings.Join(why, " and ")
}

func rejectHostTags(c *round, vm *VM, r *room) string {
	var missing []string
	for _, t := range vm.Tags {
		if !slices.Contains(r.h.Tags, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return c.explain(func() string { return "lacks tag " + strings.Join(missing, ", ") })
	}
	return ""
}

func rejectStorage(c *round, vm *VM, r *room) string {
	for _, id := range vm.Volumes {
		if v := c.s.Volumes[id]; v != nil && v.Pool != "" && slices.Contains(r.h.Lost, v.Pool) {
			return c.explain(func() string { return fmt.Sprintf("cannot reach storage pool %s (volume %s)", v.Pool, id) })
		}
	}
	return ""
}

func rejectReplica(c *round, vm *VM, r *room) string {
	for _, id := range vm.Volumes {
		if v := c.s.Volumes[id]; v != nil && len(v.Replicas) > 0 && !slices.Contains(v.Replicas, r.h.ID) {
			return c.explain(func() string { return "holds no replica of volume " + id })
		}
	}
	return ""
}

func rejectNodeAffinity(c *round, vm *VM, r *room) string {
	if n := c.s.Rules.nodeRule(vm.Name); n != nil && n.Strict {
		if _, ok := n.Hosts[r.h.ID]; !ok {
			return c.explain(func() string { return "is not in strict rule " + n.Name })
		}
	}
	return ""
}

func rejectAntiAffinity(c *round, vm *VM, r *room) string {
	if g := vm.AntiAffinity; g != "" {
		if o := c.anti[r.h.ID][g]; o != "" && o != vm.Name {
			return c.explain(func() string { return fmt.Sprintf("runs %s (anti-affinity group %s)", o, g) })
		}
	}
	for _, a := range c.s.Rules.Resources {
		if a.Together || !slices.Contains(a.VMs, vm.Name) {
			continue
		}
		for _, o := range a.VMs {
			if o != vm.Name && c.at(o) == r.h.ID {
				return c.explain(func() string { return fmt.Sprintf("runs %s (%s)", o, a.Name) })
			}
		}
	}
	return ""
}

func rejectColocation(c *round, vm *VM, r *room) string {
	if g := vm.Affinity; g != "" {
		if at, ok := c.aff[g]; ok && at[1] != vm.Name && at[0] != r.h.ID {
			return c.explain(func() string { return fmt.Sprintf("is not %s, where %s runs (affinity group %s)", at[0], at[1], g) })
		}
	}
	for _, a := range c.s.Rules.Resources {
		if !a.Together || !slices.Contains(a.VMs, vm.Name) {
			continue
		}
		for _, o := range a.VMs {
			if at := c.at(o); o != vm.Name && at != "" && at != r.h.ID {
				return c.explain(func() string { return fmt.Sprintf("is not %s, where %s runs (%s)", at, o, a.Name) })
			}
		}
	}
	return ""
}

func scoreMoveTo(_ *round, vm *VM, r *room) int64 {
	if vm.MoveTo == r.h.ID {
		return 1
	}
	return 0
}

// scoreNodeAffinity ranks the hosts of the VM's node-affinity rule by their
// priority, above every host the rule does not list.
func scoreNodeAffinity(c *round, vm *VM, r *room) int64 {
	if n := c.s.Rules.nodeRule(vm.Name); n != nil {
		if p, ok := n.Hosts[r.h.ID]; ok {
			return int64(p) + 1
		}
	}
	return 0
}

func scorePreferred(_ *round, vm *VM, r *room) int64 {
	if i := slices.Index(vm.Preferred, r.h.ID); i >= 0 {
		return int64(len(vm.Preferred) - i)
	}
	return 0
}

// scoreSpread prefers the host with the most free memory, spreading load.
func scoreSpread(_ *round, _ *VM, r *room) int64 {
	return r.memFree
}
