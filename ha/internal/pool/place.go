package pool

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Assignment is one placement decision.
type Assignment struct {
	VM, Host string
}

// Placement is the outcome of one placement round.
type Placement struct {
	// Assign lists decisions in start order.
	Assign []Assignment
	// Unplaced maps a VM that found no host to why.
	Unplaced map[string]string
	// Evict lists best-effort VMs to stop so that a restart VM fits.
	Evict []string
	// Delayed maps a VM whose start waits for the start delay of a VM
	// before it in the start order to when it may start.
	Delayed map[string]time.Time
}

// round is the working state of one placement round.
type round struct {
	s     *State
	rooms map[string]*room
	ids   []string // every host that could run VMs, sorted
	// moving are the VMs this round places; placedOn maps those placed so
	// far to their host.
	moving   map[string]bool
	placedOn map[string]string
	avoid    map[string]string // VM → the host it is relocated from
	// anti maps a host and an anti-affinity group to the first VM (by name)
	// of the group on it; aff maps an affinity group to the host and name
	// of its first VM (by name) placed. The filters look groups up here
	// rather than walk every VM.
	anti map[string]map[string]string
	aff  map[string][2]string
	// quiet: filters say only whether they refuse, not why.
	quiet bool
}

// startLess orders VMs for placement and start: restart before best-effort,
// higher priority first, then lower order, then name.
func startLess(a, b *VM) int {
	rank := func(v *VM) int {
		if v.Restart == RestartAlways {
			return 0
		}
		return 1
	}
	return cmp.Or(
		cmp.Compare(rank(a), rank(b)),
		cmp.Compare(b.Priority, a.Priority),
		cmp.Compare(a.Order, b.Order),
		cmp.Compare(a.Name, b.Name),
	)
}

// placeable reports whether vm wants a host at all.
func placeable(vm *VM) bool {
	return vm != nil && !vm.Stopped && vm.Restart != RestartOff
}

// newRound charges every host with the VMs that stay on it. VMs in moving
// are about to be placed: they are charged nowhere.
func newRound(s *State, moving map[string]bool) *round {
	c := &round{s: s, rooms: make(map[string]*room, len(s.Hosts)), moving: moving, placedOn: map[string]string{}, avoid: map[string]string{},
		anti: map[string]map[string]string{}, aff: map[string][2]string{}}
	for _, id := range sortedKeys(s.Hosts) {
		h := s.Hosts[id]
		if h.Witness || h.State == HostLeft {
			continue
		}
		c.rooms[id] = &room{h: h, memFree: h.MemKiB, cpuFree: h.CPUs}
		c.ids = append(c.ids, id)
	}
	for name, vm := range s.VMs { // any order: charging commutes
		at := vm.Host
		if at == "" && vm.Observed.State == Running {
			at = vm.Observed.Host // released, still stopping there
		}
		if moving[name] || at == "" || (vm.Stopped && vm.Observed.State != Running) {
			continue
		}
		c.charge(vm, at)
	}
	return c
}

func (c *round) charge(vm *VM, host string) {
	if c.moving[vm.Name] {
		c.placedOn[vm.Name] = host
	}
	if g := vm.AntiAffinity; g != "" {
		if c.anti[host] == nil {
			c.anti[host] = map[string]string{}
		}
		if n := c.anti[host][g]; n == "" || vm.Name < n {
			c.anti[host][g] = vm.Name
		}
	}
	if g := vm.Affinity; g != "" {
		if at, ok := c.aff[g]; !ok || vm.Name < at[1] {
			c.aff[g] = [2]string{host, vm.Name}
		}
	}
	if r := c.rooms[host]; r != nil {
		r.memFree -= vm.MemKiB
		r.cpuFree -= vm.CPUs
	}
}

// at is the host VM name stays on or was given this round ("" : none).
func (c *round) at(name string) string {
	if c.moving[name] {
		return c.placedOn[name]
	}
	vm := c.s.VMs[name]
	switch {
	case vm == nil || vm.Stopped && vm.Observed.State != Running:
		return ""
	case vm.Host == "" && vm.Observed.State == Running:
		return vm.Observed.Host
	}
	return vm.Host
}

// pick runs the filters over every host and returns the best-scoring host
// that passed them all, or nil and why none did.
func (c *round) pick(vm *VM, skip ...string) (*room, string) {
	var best *room
	c.quiet = true
	for _, id := range c.ids {
		r := c.rooms[id]
		if _, reason := c.rejectBy(vm, r, skip...); reason != "" {
			continue
		}
		if best == nil || c.compare(vm, r, best, len(Scorers)) > 0 {
			best = r
		}
	}
	c.quiet = false
	if best != nil {
		return best, ""
	}
	return nil, c.whyNone(vm, skip...)
}

// whyNone says why no host takes vm, host by host.
func (c *round) whyNone(vm *VM, skip ...string) string {
	var why []string
	byFilter := map[string]int{}
	for _, id := range c.ids {
		name, reason := c.rejectBy(vm, c.rooms[id], skip...)
		why = append(why, id+" "+reason)
		byFilter[name]++
	}
	switch {
	case len(why) == byFilter["host-state"]:
		return "no eligible host: " + orNone(why)
	case byFilter["capacity"] > 0:
		return "no capacity: " + strings.Join(why, "; ") + "; waiting for room (add a host, stop a VM or lower its size)"
	}
	return "no host fits: " + strings.Join(why, "; ")
}

func orNone(why []string) string {
	if len(why) == 0 {
		return "the pool has no host that runs VMs"
	}
	return strings.Join(why, "; ")
}

// reject returns the first filter's reason for refusing r, skipping the
// filters named in skip.
func (c *round) reject(vm *VM, r *room, skip ...string) string {
	_, reason := c.rejectBy(vm, r, skip...)
	return reason
}

// rejectBy is reject that also names the filter.
func (c *round) rejectBy(vm *VM, r *room, skip ...string) (string, string) {
	for _, f := range Filters {
		if slices.Contains(skip, f.Name) {
			continue
		}
		if reason := f.Reject(c, vm, r); reason != "" {
			return f.Name, reason
		}
	}
	return "", ""
}

// compare ranks a against b on the first n scorers (ties: the lower name).
func (c *round) compare(vm *VM, a, b *room, n int) int {
	for _, sc := range Scorers[:n] {
		if d := cmp.Compare(sc.Score(c, vm, a), sc.Score(c, vm, b)); d != 0 {
			return d
		}
	}
	return 0
}

// Place decides hosts for the VMs named in want, with everything else in s
// fixed. A VM in want that has a host is treated as moving: its host is not
// charged for it, and if that host is healthy at the VM's epoch it is not a
// candidate (the VM is relocated from it). s is not modified.
func Place(s *State, want []string, now time.Time) Placement {
	out := Placement{Unplaced: map[string]string{}, Delayed: map[string]time.Time{}}
	moving := map[string]bool{}
	var vms []*VM
	for _, name := range want {
		if vm := s.VMs[name]; placeable(vm) && !moving[name] {
			moving[name] = true
			vms = append(vms, vm)
		}
	}
	slices.SortFunc(vms, startLess)
	c := newRound(s, moving)
	evicted := map[string]bool{}
	gates := startGates(s, moving, now)
	for _, vm := range vms {
		if h := s.Hosts[vm.Host]; h != nil && vm.OwnerEpoch == h.Epoch {
			c.avoid[vm.Name] = vm.Host
		}
		if until := gates.until(vm); until.After(now) {
			out.Delayed[vm.Name] = until
			continue
		}
		r, reason := c.pick(vm)
		if r == nil {
			if vm.Restart == RestartAlways {
				if host, victims, ok := c.makeRoom(vm, moving, evicted); ok {
					// Hold the room for vm: the victims' share comes free
					// and vm's is taken, so that a VM later in the round
					// does not take it and have to be evicted in turn.
					r := c.rooms[host]
					for _, v := range victims {
						evicted[v] = true
						r.memFree += c.s.VMs[v].MemKiB
						r.cpuFree += c.s.VMs[v].CPUs
					}
					r.memFree -= vm.MemKiB
					r.cpuFree -= vm.CPUs
					out.Evict = append(out.Evict, victims...)
					reason = fmt.Sprintf("making room on %s: waiting for VMs leaving it to stop", host)
					if len(victims) > 0 {
						reason = fmt.Sprintf("making room on %s by stopping best-effort %s", host, strings.Join(victims, ", "))
					}
				}
			}
			out.Unplaced[vm.Name] = reason
			continue
		}
		c.charge(vm, r.h.ID)
		out.Assign = append(out.Assign, Assignment{VM: vm.Name, Host: r.h.ID})
		gates.started(vm, now)
	}
	return out
}

// gates hold the start delays in force: a VM waits until every VM of the
// same priority and a lower order that started less than its StartDelay ago
// has had that time.
type gates []gate

type gate struct {
	priority, order int
	until           time.Time
}

func startGates(s *State, moving map[string]bool, now time.Time) *gates {
	g := &gates{}
	for name, vm := range s.VMs { // any order: only the latest gate counts
		if vm.Host != "" && !moving[name] && vm.StartDelay > 0 {
			if until := vm.AssignedAt.Add(vm.StartDelay); until.After(now) {
				*g = append(*g, gate{vm.Priority, vm.Order, until})
			}
		}
	}
	return g
}

func (g *gates) started(vm *VM, now time.Time) {
	if vm.StartDelay > 0 {
		*g = append(*g, gate{vm.Priority, vm.Order, now.Add(vm.StartDelay)})
	}
}

func (g *gates) until(vm *VM) time.Time {
	var t time.Time
	for _, x := range *g {
		if x.priority == vm.Priority && x.order < vm.Order && x.until.After(t) {
			t = x.until
		}
	}
	return t
}

// makeRoom finds the host where stopping the fewest best-effort VMs (lowest
// priority first) lets vm fit, among hosts that pass every other filter. A
// host where VMs already leaving free enough room comes with no victims.
func (c *round) makeRoom(vm *VM, moving, evicted map[string]bool) (string, []string, bool) {
	bestHost, best, found := "", []string(nil), false
	c.quiet = true
	defer func() { c.quiet = false }()
	for _, id := range c.ids {
		r := c.rooms[id]
		if c.reject(vm, r, "capacity") != "" || r.h.MemKiB <= 0 || r.h.CPUs <= 0 {
			continue // refused for another reason, or its capacity is unknown
		}
		cands, mem, cpu := c.evictable(id, moving, evicted)
		mem += r.memFree
		cpu += r.cpuFree
		fits := func() bool {
			return mem >= vm.MemKiB && cpu >= vm.CPUs
		}
		var victims []string
		for _, o := range cands {
			if fits() {
				break
			}
			mem += o.MemKiB
			cpu += o.CPUs
			victims = append(victims, o.Name)
		}
		if fits() && (!found || len(victims) < len(best)) {
			bestHost, best, found = id, victims, true
		}
	}
	return bestHost, best, found
}

// evictable lists the best-effort VMs on host that may be stopped to make
// room, lowest priority first, and the room that VMs already leaving it
// will free.
func (c *round) evictable(host string, moving, evicted map[string]bool) ([]*VM, int64, int) {
	var cands []*VM
	var mem int64
	var cpu int
	for _, name := range sortedKeys(c.s.VMs) {
		o := c.s.VMs[name]
		if o.Host == host && !moving[name] && !evicted[name] && !o.Stopped && o.Restart == RestartBestEffort && o.Migrating == nil {
			cands = append(cands, o)
		}
		if o.Host == "" && o.Observed.Host == host && o.Observed.State == Running {
			mem += o.MemKiB
			cpu += o.CPUs
		}
	}
	slices.SortStableFunc(cands, func(a, b *VM) int { return cmp.Compare(a.Priority, b.Priority) })
	return cands, mem, cpu
}
