package pool

import (
	"fmt"
	"strings"
	"time"
)

// world is a simulated pool around a State: hosts that renew their leases,
// agents that start and stop VMs as the state says (under their lease
// only), fencing devices that answer as scripted, and a leader that calls
// Plan every step and commits what its actions did. It records the truth (which
// host runs which VM) and checks the safety invariants against it after
// every step. It is a test harness: the model under test is Plan and the
// transitions.
type world struct {
	s     *State
	base  time.Time
	now   time.Time
	step  time.Duration
	hosts map[string]*simHost
	// fence holds scripted outcomes per host, consumed one per round:
	// ok (verified-off), self (no device: nothing), fail, timeout,
	// unverified. The default is ok.
	fence map[string][]string
	// migrateFails makes the next live migration of a VM fail;
	// migrateSteps makes it last that many steps.
	migrateFails map[string]bool
	migrateSteps map[string]int
	lastRan      map[string]ran
	// stalled: the leader is paused, so nothing commits (no renewal, no
	// report, no plan) while hosts' clocks run on.
	stalled bool
	// removedOne: the property test removed a host already.
	removedOne bool
	prevPlan   map[string]bool
	out        []string
	violations []string
	refusals   []string
	starts     int
}

// ran is where a VM last ran, and whether it stopped there in a way the
// leader learnt of (the host's own stop or crash, reported).
type ran struct {
	host  string
	epoch uint64
	clean bool
}

type simHost struct {
	id         string
	power      bool
	hung       bool
	cut        bool
	watchdog   bool
	epoch      uint64
	leaseUntil time.Time
	view       *State // what a cut-off host last saw
	running    map[string]bool
	crashed    map[string]bool
	marks      map[string]Mark
}

func newWorld(t Timings) *world {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewState(t)
	s.LeaderSince = base.Add(-time.Minute)
	return &world{
		s: s, base: base, now: base, step: 250 * time.Millisecond,
		hosts: map[string]*simHost{}, fence: map[string][]string{}, migrateFails: map[string]bool{}, migrateSteps: map[string]int{},
		lastRan: map[string]ran{}, prevPlan: map[string]bool{},
	}
}

func defaultTimings() Timings {
	return Timings{
		DeadTime: time.Second, InitDead: 3 * time.Second, Lease: 1500 * time.Millisecond,
		ReassignAfter: 2 * time.Second, EscalateAfter: 3,
		FenceRetry: Backoff{Initial: 500 * time.Millisecond, Max: 4 * time.Second, Factor: 2},
	}
}

func (w *world) logf(format string, args ...any) {
	w.out = append(w.out, fmt.Sprintf("%-6s ", "+"+w.now.Sub(w.base).String())+fmt.Sprintf(format, args...))
}

func (w *world) addHost(h *Host) {
	h.State, h.LastRenewal = HostOnline, w.now
	w.s.Hosts[h.ID] = h
	w.hosts[h.ID] = &simHost{id: h.ID, power: true, watchdog: w.s.Timings.WatchdogTimeout > 0,
		leaseUntil: w.now.Add(w.s.Timings.Lease), running: map[string]bool{}, crashed: map[string]bool{}, marks: map[string]Mark{}}
}

// putOn places vm on host as if it had been started there before the story.
func (w *world) putOn(vm *VM, host string) {
	w.s.Index++
	vm.Host, vm.OwnerEpoch, vm.Assignment, vm.AssignedAt = host, w.s.Hosts[host].Epoch, w.s.Index, w.now.Add(-time.Hour)
	vm.Observed = Observed{Host: host, State: Running, View: w.s.Index}
	sh := w.hosts[host]
	sh.running[vm.Name] = true
	sh.marks[vm.Name] = MarkOf(vm)
	w.lastRan[vm.Name] = ran{host: host, epoch: vm.OwnerEpoch}
}

// powerOff kills a host: everything it ran is gone.
func (w *world) powerOff(sh *simHost, why string) {
	if !sh.power {
		return
	}
	sh.power, sh.hung = false, false
	var gone []string
	for _, name := range sortedKeys(sh.running) {
		gone = append(gone, name)
		w.stopped(sh, name, false)
	}
	clear(sh.marks)
	clear(sh.crashed)
	msg := sh.id + " powered off (" + why + ")"
	if len(gone) > 0 {
		msg += ", " + strings.Join(gone, ", ") + " gone"
	}
	w.logf("%s", msg)
}

func (w *world) stopped(sh *simHost, vm string, clean bool) {
	delete(sh.running, vm)
	if r := w.lastRan[vm]; r.host == sh.id {
		r.clean = clean
		w.lastRan[vm] = r
	}
}

// powerOn boots a host: it reads its epoch from the pool and registers.
func (w *world) powerOn(id string) {
	sh := w.hosts[id]
	if sh.power {
		return
	}
	sh.power, sh.hung = true, false
	sh.leaseUntil = time.Time{}
	if sh.cut {
		w.logf("%s boots cut off, believing it is at epoch %d", id, sh.epoch)
		return
	}
	w.logf("%s boots", id)
	w.register(sh)
}

func (w *world) register(sh *simHost) {
	h := w.s.Hosts[sh.id]
	sh.epoch = h.Epoch
	if err := w.s.Register(sh.id, sh.epoch, w.now); err != nil {
		w.logf("%s register refused: %v", sh.id, err)
		return
	}
	w.logf("%s registers at epoch %d", sh.id, sh.epoch)
}

// run advances the world by d in steps.
func (w *world) run(d time.Duration) {
	end := w.now.Add(d)
	for w.now.Before(end) {
		w.now = w.now.Add(w.step)
		w.tick()
	}
}

// tick is one step: migrations land, hosts renew and act, the leader plans
// and carries its plan out, and the invariants are checked.
func (w *world) tick() {
	if !w.stalled {
		w.finishMigrations()
	}
	for _, id := range sortedKeys(w.hosts) {
		w.hostStep(w.hosts[id])
	}
	if !w.stalled {
		w.leaderStep()
	}
	w.checkSingleRunner()
}

func (w *world) hostStep(sh *simHost) {
	t := w.s.Timings
	if !sh.power {
		return
	}
	if sh.watchdog && !sh.leaseUntil.IsZero() && w.now.After(sh.leaseUntil.Add(t.WatchdogTimeout)) {
		w.powerOff(sh, "its watchdog fired")
		return
	}
	if sh.hung {
		return
	}
	if !sh.cut && !w.stalled {
		w.renew(sh)
	}
	view := w.s
	if sh.cut {
		view = sh.view
	}
	if !w.now.Before(sh.leaseUntil) {
		w.isolate(sh)
	} else {
		w.agent(sh, view)
	}
	if !sh.cut && !w.stalled {
		w.report(sh)
	}
}

func (w *world) renew(sh *simHost) {
	h := w.s.Hosts[sh.id]
	if h.Epoch != sh.epoch {
		// Fenced while it lived, or booted from a stale copy of the pool:
		// its renewal is refused, so it destroys everything and registers
		// at the pool's epoch.
		if err := w.s.Renew(sh.id, sh.epoch, w.now); err == nil {
			w.violate("%s renewed at stale epoch %d", sh.id, sh.epoch)
			return
		}
		var gone []string
		for _, name := range sortedKeys(sh.running) {
			gone = append(gone, name)
			w.stopped(sh, name, false)
		}
		clear(sh.marks)
		what := "nothing to destroy"
		if len(gone) > 0 {
			what = "destroys " + strings.Join(gone, ", ")
		}
		w.logf("%s renewal refused at stale epoch %d (pool at %d): %s", sh.id, sh.epoch, h.Epoch, what)
		sh.leaseUntil = time.Time{}
		w.register(sh)
		return
	}
	if h.State == HostJoining {
		w.register(sh)
	}
	if h.State == HostLeft {
		return // removed: its renewals are refused, and its lease runs out
	}
	if err := w.s.Renew(sh.id, sh.epoch, w.now); err == nil {
		sh.leaseUntil = w.now.Add(w.s.Timings.Lease)
	}
}

func (w *world) isolate(sh *simHost) {
	if len(sh.running) == 0 {
		return
	}
	gone := sortedKeys(sh.running)
	for _, name := range gone {
		w.stopped(sh, name, false)
	}
	w.logf("%s isolates (lease ended): destroys %s", sh.id, strings.Join(gone, ", "))
}

// agent is the host's agent under a valid lease: stop what is not its own,
// start what is, once per mark.
func (w *world) agent(sh *simHost, view *State) {
	mine := func(vm *VM) bool {
		return vm != nil && vm.Host == sh.id && vm.OwnerEpoch == sh.epoch && !vm.Stopped
	}
	for _, name := range sortedKeys(sh.running) {
		vm := view.VMs[name]
		if mine(vm) || vm != nil && vm.Migrating != nil && vm.Migrating.To == sh.id {
			continue
		}
		w.stopped(sh, name, true)
		w.logf("%s stops %s", sh.id, name)
	}
	for _, name := range sortedKeys(view.VMs) {
		vm := view.VMs[name]
		if !mine(vm) || sh.running[name] || vm.Migrating != nil {
			continue
		}
		if m, ok := sh.marks[name]; ok && m == MarkOf(vm) {
			continue // stopped since its start: wait for a restart grant
		}
		w.start(sh, vm)
	}
}

func (w *world) start(sh *simHost, vm *VM) {
	// A removed host is the one exception: it is not fenced, and the pool
	// waits out its lease instead (the single-runner check still holds it).
	if r, ok := w.lastRan[vm.Name]; ok && r.host != sh.id && !r.clean && w.s.Hosts[r.host].State != HostLeft {
		if _, proven := w.s.proofAtOrAfter(r.host, r.epoch); !proven {
			w.violate("%s started on %s before a fence proof of %s (epoch %d), where it last ran", vm.Name, sh.id, r.host, r.epoch)
		}
	}
	sh.running[vm.Name] = true
	delete(sh.crashed, vm.Name)
	sh.marks[vm.Name] = MarkOf(vm)
	w.lastRan[vm.Name] = ran{host: sh.id, epoch: sh.epoch}
	w.starts++
	w.logf("%s starts %s", sh.id, vm.Name)
}

// report tells the pool what differs from what it knows.
func (w *world) report(sh *simHost) {
	for _, name := range sortedKeys(w.s.VMs) {
		vm := w.s.VMs[name]
		st := Stopped
		switch {
		case sh.running[name]:
			st = Running
		case sh.crashed[name]:
			st = Crashed
		case vm.Host != sh.id && vm.Observed.Host != sh.id:
			continue
		}
		o := vm.Observed
		stale := vm.Host == "" && o.View < vm.Released
		fresh := vm.Host != sh.id || o.View >= vm.Assignment
		if o.Host == sh.id && o.State == st && !stale && fresh {
			continue
		}
		if err := w.s.Report(sh.id, sh.epoch, w.s.Index, name, st); err != nil {
			w.logf("%s report refused: %v", sh.id, err)
			continue
		}
		if r := w.lastRan[name]; r.host == sh.id && st != Running {
			// The host said it does not run it, under its lease, at its
			// epoch: the pool knows, and may place it elsewhere.
			r.clean = true
			w.lastRan[name] = r
		}
	}
}

func (w *world) finishMigrations() {
	for _, name := range sortedKeys(w.s.VMs) {
		vm := w.s.VMs[name]
		mg := vm.Migrating
		if mg == nil || w.s.Hosts[mg.From].State == HostFenced {
			continue
		}
		if w.migrateSteps[name] > 0 {
			w.migrateSteps[name]--
			continue
		}
		from, to := w.hosts[mg.From], w.hosts[mg.To]
		ok := !w.migrateFails[name] && from.power && !from.hung && !from.cut && from.running[name] && to.power && !to.cut
		delete(w.migrateFails, name)
		if ok {
			delete(from.running, name)
			to.running[name] = true
			to.marks[name] = Mark{} // started by the migration, not by the agent
			w.lastRan[name] = ran{host: mg.To, epoch: mg.ToEpoch}
			w.logf("%s live-migrated %s→%s", name, mg.From, mg.To)
		} else {
			w.logf("%s live migration %s→%s failed", name, mg.From, mg.To)
		}
		if err := w.s.Migrated(name, ok); err != nil {
			w.refusals = append(w.refusals, err.Error())
		}
		if ok {
			to.marks[name] = MarkOf(w.s.VMs[name])
		}
	}
}

// leaderStep plans and carries the plan out, and plans again while that
// changed the state (the leader's controller wakes on every commit). Only
// actions that were not in the previous step's plans are written to the
// transcript.
func (w *world) leaderStep() {
	seen := map[string]bool{}
	for range 5 {
		before := w.s.Index
		for _, a := range Plan(w.s, w.now) {
			line := a.Format(w.base)
			result := w.execute(a)
			told := w.prevPlan[line] || seen[line]
			seen[line] = true
			if told && result == "" {
				continue
			}
			if result != "" {
				line += " → " + result
			}
			w.logf("%s", line)
		}
		if w.s.Index == before {
			break
		}
	}
	w.prevPlan = seen
}

// execute carries one action out and commits its outcome; it returns what
// happened when that is worth telling.
func (w *world) execute(a Action) string {
	if a.Kind == ActFence {
		return w.fenceRound(a)
	}
	if a.Kind == ActWait {
		return ""
	}
	if err := w.s.Apply(a, w.now); err != nil {
		w.refusals = append(w.refusals, a.String()+": "+err.Error())
		return "refused: " + err.Error()
	}
	if a.Kind == ActSelfFence {
		if sh := w.hosts[a.Host]; sh.power && !sh.watchdog {
			w.violate("self-fence proof for %s, which has no watchdog and is still on", a.Host)
		}
	}
	return ""
}

func (w *world) fenceRound(a Action) string {
	sh := w.hosts[a.Host]
	outcome := "ok"
	if q := w.fence[a.Host]; len(q) > 0 {
		outcome, w.fence[a.Host] = q[0], q[1:]
	}
	var err error
	switch outcome {
	case "ok":
		w.powerOff(sh, "fenced")
		err = w.s.RecordProof(Proof{Host: a.Host, Epoch: a.Epoch, Kind: ProofVerifiedOff, Method: "bmc", At: w.now})
		outcome = "verified-off"
	case "unverified":
		// The device took the command but cannot say whether the host is
		// off: here it is not.
		if err = w.s.RecordProof(Proof{Host: a.Host, Epoch: a.Epoch, Kind: ProofUnverified, Method: "pdu", At: w.now}); err == nil {
			err = w.s.FenceFailed(a.Host, a.Epoch, w.now, "unverified result")
		}
	case "fail", "timeout":
		why := "device refused"
		if outcome == "timeout" {
			why = "device timed out"
		}
		err = w.s.FenceFailed(a.Host, a.Epoch, w.now, why)
	default:
		err = fmt.Errorf("unknown fence outcome %q", outcome)
	}
	if err != nil {
		w.refusals = append(w.refusals, err.Error())
		return outcome + ", refused: " + err.Error()
	}
	return outcome
}

func (w *world) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.violations = append(w.violations, fmt.Sprintf("+%v %s", w.now.Sub(w.base), msg))
	w.logf("VIOLATION %s", msg)
}

// checkSingleRunner: no VM active on two hosts (a hung host's VMs count).
func (w *world) checkSingleRunner() {
	on := map[string][]string{}
	for _, id := range sortedKeys(w.hosts) {
		sh := w.hosts[id]
		if !sh.power {
			continue
		}
		for name := range sh.running {
			on[name] = append(on[name], id)
		}
	}
	for _, name := range sortedKeys(on) {
		if len(on[name]) > 1 {
			w.violate("%s runs on %s", name, strings.Join(on[name], " and "))
		}
	}
}

// flush returns what was logged since the last flush.
func (w *world) flush() string {
	out := strings.Join(w.out, "\n")
	w.out = nil
	if out == "" {
		return "(nothing)"
	}
	return out
}

// ack is an operator's acknowledgement that a suspect host is off, after
// powering it off (or not: an operator can be wrong).
func (w *world) ack(sh *simHost, powerOff bool) {
	if powerOff {
		w.powerOff(sh, "by the operator")
	}
	h := w.s.Hosts[sh.id]
	if err := w.s.RecordProof(Proof{Host: sh.id, Epoch: h.Epoch, Kind: ProofOperator, Method: "operator", At: w.now}); err != nil {
		w.logf("ack refused: %v", err)
	}
}

// vmCrash kills a VM's guest wherever it runs.
func (w *world) vmCrash(name string) {
	for _, id := range sortedKeys(w.hosts) {
		if sh := w.hosts[id]; sh.running[name] && sh.power && !sh.hung {
			w.stopped(sh, name, true)
			sh.crashed[name] = true
			w.logf("%s crashes on %s", name, id)
		}
	}
}

// stall pauses the leader for d: nothing commits while hosts run on.
func (w *world) stall(d time.Duration) {
	w.logf("the leader stalls for %v", d)
	w.stalled = true
	w.run(d)
	w.stalled = false
}

// proofAtOrAfter returns a counting proof for host at epoch or later.
func (s *State) proofAtOrAfter(host string, epoch uint64) (Proof, bool) {
	for i := len(s.Proofs) - 1; i >= 0; i-- {
		if p := s.Proofs[i]; p.Host == host && p.Epoch >= epoch && p.Kind.Counts() {
			return p, true
		}
	}
	return Proof{}, false
}

// describe renders the state and the truth for a transcript.
func (w *world) describe() string {
	var b strings.Builder
	for _, id := range sortedKeys(w.s.Hosts) {
		h, sh := w.s.Hosts[id], w.hosts[id]
		power := "on"
		switch {
		case !sh.power:
			power = "off"
		case sh.hung:
			power = "hung"
		case sh.cut:
			power = "cut off"
		}
		fmt.Fprintf(&b, "host %s %s epoch=%d (%s)", id, h.State, h.Epoch, power)
		if r := sortedKeys(sh.running); len(r) > 0 && sh.power {
			fmt.Fprintf(&b, " runs %s", strings.Join(r, ","))
		}
		b.WriteString("\n")
	}
	for _, name := range sortedKeys(w.s.VMs) {
		vm := w.s.VMs[name]
		fmt.Fprintf(&b, "vm %s", name)
		if vm.Host != "" {
			fmt.Fprintf(&b, " on %s@%d", vm.Host, vm.OwnerEpoch)
		} else {
			b.WriteString(" unplaced")
		}
		if vm.Observed.Host != "" {
			fmt.Fprintf(&b, " observed %s@%s", orUnknown(vm.Observed.State), vm.Observed.Host)
		}
		if vm.LocalRestarts > 0 {
			fmt.Fprintf(&b, " restarts=%d", vm.LocalRestarts)
		}
		if vm.Pending != "" {
			fmt.Fprintf(&b, " pending=%q", vm.Pending)
		}
		b.WriteString("\n")
	}
	for _, p := range w.s.Proofs {
		fmt.Fprintf(&b, "proof %s@%d %s by %s at +%v\n", p.Host, p.Epoch, p.Kind, p.Method, p.At.Sub(w.base))
	}
	for _, inc := range w.s.Incidents {
		state := "open"
		if !inc.Closed.IsZero() {
			state = fmt.Sprintf("closed after %v", inc.Closed.Sub(inc.Opened))
		}
		fmt.Fprintf(&b, "incident %s@%d vms=[%s] %s\n", inc.Host, inc.Epoch, strings.Join(inc.VMs, " "), state)
		for _, n := range inc.Notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	for _, v := range w.violations {
		fmt.Fprintf(&b, "VIOLATION %s\n", v)
	}
	return b.String()
}

// partition cuts a host off the leader: it keeps what it last saw and runs
// its VMs until its lease ends.
func (w *world) partition(id string) {
	sh := w.hosts[id]
	if sh.cut {
		return // it sees nothing new
	}
	sh.cut = true
	sh.view = w.s.Clone()
}

func (w *world) heal(id string) {
	sh := w.hosts[id]
	sh.cut, sh.view = false, nil
}
