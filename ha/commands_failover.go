package ha

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/xenctl"
)

// The failover commands. Each apply checks everything first and changes the
// state only after, so that a refusal leaves the state as it was. They are
// where the FSM enforces the safety rules it can see: a stale
// epoch is refused everywhere, and a VM leaves a host only when that host is
// fenced at the VM's epoch, left the cluster, or no longer runs it.

// ErrStaleEpoch is the refusal of a renewal, report or fence record that
// carries an epoch older than the host's: the host was fenced meanwhile. A
// host agent that meets it destroys what it runs and registers again.
var ErrStaleEpoch = errors.New("ha: stale host epoch")

// maxFences bounds State.Fences.
const maxFences = 256

func init() {
	registerCommand("lease.renew", func() command { return &renewCmd{} })
	registerCommand("host.register", func() command { return &registerCmd{} })
	registerCommand("host.suspect", func() command { return &suspectCmd{} })
	registerCommand("host.fence", func() command { return &fenceCmd{} })
	registerCommand("host.fence-failed", func() command { return &fenceFailedCmd{} })
	registerCommand("host.maintenance", func() command { return &maintenanceCmd{} })
	registerCommand("vm.assign", func() command { return &assignCmd{} })
	registerCommand("vm.observed", func() command { return &observedCmd{} })
	registerCommand("vm.restart", func() command { return &restartCmd{} })
	registerCommand("vm.release", func() command { return &releaseCmd{} })
	registerCommand("vm.migrate", func() command { return &migrateCmd{} })
	registerCommand("vm.migrated", func() command { return &migratedCmd{} })
	registerCommand("incident.close", func() command { return &incidentCloseCmd{} })
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

func staleEpoch(host string, got, have uint64) error {
	return fmt.Errorf("%w: %w: host %s sent epoch %d but the cluster is at epoch %d (it was fenced): destroy its VMs and register again",
		ErrRefused, ErrStaleEpoch, host, got, have)
}

func hostOf(s *State, id string) (*Host, error) {
	h := s.Hosts[id]
	if h == nil {
		return nil, fmt.Errorf("%w: %w: host %q is not a member", ErrRefused, ErrNotFound, id)
	}
	return h, nil
}

// hostAtEpoch returns the member id if epoch is its current epoch. Every
// command a host (or the leader, about a host) sends carries the epoch it
// acts at; an older one is refused, because a fence happened since.
func hostAtEpoch(s *State, id string, epoch uint64) (*Host, error) {
	h, err := hostOf(s, id)
	if err != nil {
		return nil, err
	}
	if epoch != h.Epoch {
		return nil, staleEpoch(id, epoch, h.Epoch)
	}
	return h, nil
}

func setHostState(h *Host, st HostState, at time.Time) {
	if h.State != st {
		h.State, h.Since = st, at
	}
}

// renewCmd renews a host's lease. The host counts its lease from Sent on its
// own monotonic clock; the cluster counts silence from the apply.
type renewCmd struct {
	Host  string    `json:"host"`
	Epoch uint64    `json:"epoch"`
	Sent  time.Time `json:"sent"`
}

func (c *renewCmd) kind() string { return "lease.renew" }

func (c *renewCmd) apply(s *State, m applyMeta) (any, error) {
	h, err := hostAtEpoch(s, c.Host, c.Epoch)
	if err != nil {
		return nil, err
	}
	switch h.State {
	case HostFenced, HostLeft:
		return nil, refuse("host %s is %s: it must register before it renews", c.Host, h.State)
	case HostJoining:
		setHostState(h, HostOnline, m.At) // its first renewal brings it online
	}
	h.LeaseSent = c.Sent
	if h.State == HostSuspect {
		// Back before anyone fenced it: it is not fenced (its fence is
		// cancelled by the controller seeing this state).
		setHostState(h, HostOnline, m.At)
		if inc := s.findIncident(c.Host, h.Epoch); inc != nil {
			inc.note("host renewed its lease before it was fenced: nothing moved")
			inc.close(m.At)
		}
	}
	return h.Epoch, nil
}

// registerCmd brings a joining or fenced host (which destroyed everything
// it ran) online at the epoch it read.
type registerCmd struct {
	Host       string    `json:"host"`
	Epoch      uint64    `json:"epoch"`
	Capacity   *Capacity `json:"capacity,omitempty"`
	MigrateURI string    `json:"migrate_uri,omitempty"`
}

func (c *registerCmd) kind() string { return "host.register" }

func (c *registerCmd) apply(s *State, m applyMeta) (any, error) {
	h, err := hostAtEpoch(s, c.Host, c.Epoch)
	if err != nil {
		return nil, err
	}
	if h.State == HostLeft {
		return nil, refuse("host %s left the cluster: join it again", c.Host)
	}
	if c.Capacity != nil {
		h.Capacity = *c.Capacity
	}
	h.MigrateURI = c.MigrateURI
	h.ProvenOff = false // it runs again: the old proof says nothing now
	if h.State == HostJoining || h.State == HostFenced || h.State == "" {
		setHostState(h, HostOnline, m.At)
	}
	return h.Epoch, nil
}

// suspectCmd records that the leader heard nothing from a host for longer
// than DeadTime, and opens the incident.
type suspectCmd struct {
	Host     string        `json:"host"`
	Epoch    uint64        `json:"epoch"`
	LastSeen time.Time     `json:"last_seen"` // leader's wall clock of the last renewal it applied (zero if none)
	Silence  time.Duration `json:"silence"`
}

func (c *suspectCmd) kind() string { return "host.suspect" }

func (c *suspectCmd) apply(s *State, m applyMeta) (any, error) {
	h, err := hostAtEpoch(s, c.Host, c.Epoch)
	if err != nil {
		return nil, err
	}
	if h.State != HostOnline && h.State != HostMaintenance {
		return nil, refuse("host %s is %s, not online: not marked suspect", c.Host, h.State)
	}
	setHostState(h, HostSuspect, m.At)
	inc := s.openIncident(c.Host, h.Epoch, m.Index, c.LastSeen, m.At)
	inc.note("no renewal applied for %v: suspect", c.Silence.Round(time.Millisecond))
	inc.begin(PhaseFence, m.At)
	return inc.ID, nil
}

// fenceCmd commits a fence proof for a host's current epoch: the host is
// fenced, its epoch bumps (so nothing it sends from before counts), and its
// VMs become movable.
type fenceCmd struct {
	Host      string         `json:"host"`
	Epoch     uint64         `json:"epoch"`
	Method    string         `json:"method"`
	Evidence  string         `json:"evidence"`
	ProofTime time.Time      `json:"proof_time"`
	Attempts  []FenceAttempt `json:"attempts,omitempty"`
	Manual    bool           `json:"manual,omitempty"`
	Operator  string         `json:"operator,omitempty"`
	// Proof is the proof's kind (fence.ProofKind's String); empty, as in
	// commands from before kinds existed, is unverified.
	Proof string `json:"proof,omitempty"`
	// Incident is the ID of the open incident the fencer ran for: a
	// power-off proves the host runs nothing only if nothing renewed after
	// it, and a renewal closes that incident.
	Incident string `json:"incident,omitempty"`
}

func (c *fenceCmd) kind() string { return "host.fence" }

// provesOff reports whether c, applied to host h, proves h runs nothing
// now. A verified power-off does, if it was done for the incident still
// open and the host is still suspect: the fencer started only after the
// suspect command was applied, so any renewal the host sent after the
// power-off (it was switched on again) comes later in the log, and either
// was applied before c (it made the host online and closed the incident)
// or comes after c and is refused for its old epoch.
func (c *fenceCmd) provesOff(s *State, h *Host) bool {
	if c.Manual || c.Proof != fence.ProofVerifiedOff.String() || c.Incident == "" || h.State != HostSuspect {
		return false
	}
	inc := s.findIncident(c.Host, c.Epoch)
	return inc != nil && inc.ID == c.Incident
}

func (c *fenceCmd) apply(s *State, m applyMeta) (any, error) {
	h, err := hostAtEpoch(s, c.Host, c.Epoch)
	if err != nil {
		return nil, err
	}
	if h.State == HostLeft {
		return nil, refuse("host %s left the cluster: nothing to fence", c.Host)
	}
	if c.Manual {
		if c.Operator == "" {
			return nil, refuse("manual fence acknowledgement for %s names no operator", c.Host)
		}
		if h.State != HostSuspect {
			return nil, refuse("host %s is %s: an operator may acknowledge a fence only for a suspect host (one that stopped renewing its lease)", c.Host, h.State)
		}
	}
	if c.Method == "" {
		return nil, refuse("fence record for %s names no method", c.Host)
	}
	if c.Proof != "" {
		if _, err := fence.ParseProofKind(c.Proof); err != nil {
			return nil, refuse("fence record for %s: %v", c.Host, err)
		}
	}
	provenOff := c.provesOff(s, h)
	// A proof is committed in any other state, even if the host renewed
	// meanwhile: the host is off, and that is the truth.
	at := c.ProofTime
	if at.IsZero() {
		at = m.At
	}
	s.Fences = append(s.Fences, FenceRecord{
		Host: c.Host, Epoch: c.Epoch, Method: c.Method, Evidence: c.Evidence, Time: at,
		Attempts: slices.Clone(c.Attempts), Manual: c.Manual, Operator: c.Operator, Proof: c.Proof,
	})
	if n := len(s.Fences); n > maxFences {
		s.Fences = slices.Delete(s.Fences, 0, n-maxFences)
	}
	inc := s.latestIncident(c.Host, c.Epoch)
	if inc != nil && !inc.Closed.IsZero() {
		// The host came back before the proof landed: the incident reopens,
		// because its VMs must now move after all.
		inc.Closed = time.Time{}
		inc.note("fence proof landed after the host renewed: recovering anyway")
	}
	if inc == nil {
		inc = s.openIncident(c.Host, c.Epoch, m.Index, h.LeaseSent, m.At)
	}
	inc.Attempts = appendAttempts(inc.Attempts, c.Attempts)
	if c.Manual {
		inc.note("fence acknowledged by operator %s: %s", c.Operator, c.Evidence)
	} else {
		inc.note("fenced by %s (%s)", c.Method, proofName(c.Proof))
	}
	inc.end(PhaseFence, m.At)
	inc.begin(PhaseProof, m.At)
	if provenOff {
		inc.note("verified power-off: its VMs may be placed at once")
	} else {
		inc.note("not a verified power-off: its VMs wait until its lease has run out")
	}
	h.Epoch++
	h.ProvenOff = provenOff
	setHostState(h, HostFenced, m.At)
	if len(inc.VMs) == 0 {
		inc.note("the host ran no protected VMs")
		inc.close(m.At)
	}
	return h.Epoch, nil
}

// proofName is a FenceRecord.Proof for people: empty reads as unverified.
func proofName(p string) string {
	if p == "" {
		return fence.ProofUnverified.String()
	}
	return p
}

func appendAttempts(have, add []FenceAttempt) []FenceAttempt {
	have = append(have, add...)
	if n := len(have); n > maxIncidentAttempts {
		have = slices.Delete(have, 0, n-maxIncidentAttempts)
	}
	return have
}

// fenceFailedCmd records a fencing round that produced no proof, so that
// operators see it in the status (Incident.Attempts and Notes).
type fenceFailedCmd struct {
	Host     string         `json:"host"`
	Epoch    uint64         `json:"epoch"`
	Attempts []FenceAttempt `json:"attempts"`
	Err      string         `json:"err"`
	Retry    time.Duration  `json:"retry"`
}

func (c *fenceFailedCmd) kind() string { return "host.fence-failed" }

func (c *fenceFailedCmd) apply(s *State, m applyMeta) (any, error) {
	if _, err := hostAtEpoch(s, c.Host, c.Epoch); err != nil {
		return nil, err
	}
	inc := s.findIncident(c.Host, c.Epoch)
	if inc == nil {
		return nil, refuse("no open incident for host %s at epoch %d", c.Host, c.Epoch)
	}
	inc.Attempts = appendAttempts(inc.Attempts, c.Attempts)
	inc.note("fence failed, retrying in %v: %s", c.Retry, c.Err)
	if n := len(inc.Notes); n > 2*maxIncidentAttempts {
		inc.Notes = slices.Delete(inc.Notes, 1, n-2*maxIncidentAttempts+1)
	}
	return nil, nil
}

// maintenanceCmd puts a host into maintenance (it gets nothing new and is
// drained) or takes it out.
type maintenanceCmd struct {
	Host string `json:"host"`
	On   bool   `json:"on"`
}

func (c *maintenanceCmd) kind() string { return "host.maintenance" }

func (c *maintenanceCmd) apply(s *State, m applyMeta) (any, error) {
	h, err := hostOf(s, c.Host)
	if err != nil {
		return nil, err
	}
	switch {
	case c.On && h.State == HostOnline:
		setHostState(h, HostMaintenance, m.At)
	case c.On && h.State == HostMaintenance, !c.On && h.State == HostOnline:
	case !c.On && h.State == HostMaintenance:
		setHostState(h, HostOnline, m.At)
	default:
		return nil, refuse("host %s is %s: maintenance mode changes only between online and maintenance", c.Host, h.State)
	}
	return nil, nil
}

// assignCmd places VMs. The storage hand-over is committed with it: each
// volume of a moved VM gets the target as its writer and a new generation,
// which the target's agent attaches (and promotes) before it starts the VM.
type assignCmd struct {
	Moves    []Assignment      `json:"moves"`
	Unplaced map[string]string `json:"unplaced,omitempty"`
	Reason   string            `json:"reason"`
	// Decided is the leader's clock when it found the VMs free to move (the
	// proof's wait over); the incidents' proof phase ends there and their
	// place phase begins. Zero in older commands: both end at the commit.
	Decided time.Time `json:"decided,omitzero"`
}

func (c *assignCmd) kind() string { return "vm.assign" }

// mayLeave reports whether vm may be given to another host. A VM with a
// host may leave it only when that host left, or was fenced after it was
// given the VM (its epoch moved past the VM's). A VM without a host (never
// placed, released, or taken from a fenced host) may go anywhere unless the
// host it was last seen on is alive and has not reported it stopped from a
// view that includes the release.
// stillMayRun says why the host a VM without a host was last observed on
// may still run it (it last reported it running or in an unknown state, or
// has not reported since the VM was released), or nil if it may not.
func stillMayRun(vm *VM) error {
	o := vm.Observed
	if o.State.Active() || o.State == xenctl.StateUnknown {
		return fmt.Errorf("VM %s is still %s on host %s: wait until it stopped there", vm.Name, o.State, o.Host)
	}
	if o.ViewIndex < vm.Released {
		return fmt.Errorf("VM %s: host %s has not yet reported it stopped since it was released (index %d): wait for its report", vm.Name, o.Host, vm.Released)
	}
	return nil
}

func mayLeave(s *State, vm *VM) error {
	if vm.Host == "" {
		o := vm.Observed
		if o.Host == "" {
			return nil
		}
		oh := s.Hosts[o.Host]
		if oh == nil || oh.State == HostLeft || (oh.Epoch > vm.OwnerEpoch && oh.State == HostFenced) {
			return nil
		}
		return stillMayRun(vm)
	}
	h := s.Hosts[vm.Host]
	switch {
	case h == nil, h.State == HostLeft:
		return nil
	case h.Epoch > vm.OwnerEpoch:
		// The host was fenced after it was given the VM: a proof is committed.
		return nil
	}
	return fmt.Errorf("VM %s is on host %s (%s, epoch %d) which was not fenced: fence the host or release the VM first",
		vm.Name, vm.Host, h.State, h.Epoch)
}

// decidedWithin is Decided kept within [from, at]; at when Decided is zero
// (a command from before it existed).
func (c *assignCmd) decidedWithin(from, at time.Time) time.Time {
	switch {
	case c.Decided.IsZero() || c.Decided.After(at):
		return at
	case c.Decided.Before(from):
		return from
	}
	return c.Decided
}

func (c *assignCmd) apply(s *State, m applyMeta) (any, error) {
	seen := map[string]bool{}
	for _, mv := range c.Moves {
		vm := s.VMs[mv.VM]
		if vm == nil {
			return nil, fmt.Errorf("%w: %w: VM %q", ErrRefused, ErrNotFound, mv.VM)
		}
		if seen[mv.VM] {
			return nil, refuse("VM %s assigned twice in one command", mv.VM)
		}
		seen[mv.VM] = true
		t, err := hostOf(s, mv.Host)
		if err != nil {
			return nil, err
		}
		if !eligibleHost(t) {
			return nil, refuse("host %s (%s, %s) cannot receive VM %s", mv.Host, t.Role, t.State, mv.VM)
		}
		if vm.Host == mv.Host && vm.OwnerEpoch == t.Epoch {
			continue
		}
		if err := mayLeave(s, vm); err != nil {
			return nil, refuse("%v", err)
		}
		if mg := vm.Migrating; mg != nil && mv.Host != mg.To {
			// It may already run on the migration's target.
			if th := s.Hosts[mg.To]; th != nil && th.State != HostLeft && th.Epoch <= mg.ToEpoch {
				return nil, refuse("VM %s may be running on %s, the target of its live migration: assign it there, or fence %s first", mv.VM, mg.To, mg.To)
			}
		}
	}
	for name := range c.Unplaced {
		vm := s.VMs[name]
		if vm == nil {
			return nil, fmt.Errorf("%w: %w: VM %q", ErrRefused, ErrNotFound, name)
		}
		if err := mayLeave(s, vm); err != nil && vm.Host != "" {
			return nil, refuse("%v", err)
		}
		if vm.Migrating != nil {
			return nil, refuse("VM %s is being live-migrated: it is not unplaced", name)
		}
	}
	// Checked: now change.
	for _, mv := range c.Moves {
		vm, t := s.VMs[mv.VM], s.Hosts[mv.Host]
		if vm.Host == mv.Host && vm.OwnerEpoch == t.Epoch {
			continue
		}
		from := vm.Host
		vm.Host, vm.OwnerEpoch, vm.Pending, vm.Migrating, vm.MigrateFailed = mv.Host, t.Epoch, "", nil, nil
		vm.Assigned = m.Index
		if vm.MoveTo == mv.Host {
			vm.MoveTo = ""
		}
		if from != mv.Host {
			vm.LocalRestarts = 0
			// What the old host said no longer describes this placement;
			// its word that the VM still runs there is accepted again anyway.
			vm.Observed = Observed{}
		}
		for _, id := range vm.Spec.Volumes {
			if v := s.Volumes[id]; v != nil && v.Writer != mv.Host {
				v.Writer = mv.Host
				v.Generation++
			}
		}
		for _, inc := range s.openIncidentsWith(mv.VM) {
			if p := inc.phase(PhaseProof); p != nil {
				decided := c.decidedWithin(p.Start, m.At)
				inc.end(PhaseProof, decided)
				inc.begin(PhasePlace, decided)
			}
			inc.end(PhasePlace, m.At)
			inc.begin(PhaseStorage, m.At)
			inc.begin(PhaseStart, m.At)
			inc.note("%s placed on %s", mv.VM, mv.Host)
		}
	}
	for _, name := range slices.Sorted(mapKeys(c.Unplaced)) {
		vm := s.VMs[name]
		vm.Pending = c.Unplaced[name]
		if vm.Host != "" && mayLeave(s, vm) == nil {
			vm.Host, vm.Released = "", m.Index
		}
		for _, inc := range s.openIncidentsWith(name) {
			inc.note("%s waits: %s", name, vm.Pending)
		}
	}
	return nil, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ObservedVM is one VM in a host's report.
type ObservedVM struct {
	VM     string       `json:"vm"`
	State  xenctl.State `json:"state"`
	Reason string       `json:"reason,omitempty"`
	// Attached is when the host finished attaching the VM's volumes for its
	// current assignment (zero if not this round).
	Attached time.Time `json:"attached,omitzero"`
}

// observedCmd is a host agent's batched report of what its hypervisor runs.
type observedCmd struct {
	Host  string       `json:"host"`
	Epoch uint64       `json:"epoch"`
	View  uint64       `json:"view"` // the state index the agent acted on
	VMs   []ObservedVM `json:"vms"`
}

func (c *observedCmd) kind() string { return "vm.observed" }

func (c *observedCmd) apply(s *State, m applyMeta) (any, error) {
	if _, err := hostAtEpoch(s, c.Host, c.Epoch); err != nil {
		return nil, err
	}
	var closed []string
	for _, o := range c.VMs {
		vm := s.VMs[o.VM]
		if vm == nil {
			continue // removed meanwhile
		}
		// A host's word counts for a VM assigned to it, for a VM it was last
		// seen on, and always when it says the VM is active: that is the one
		// report nobody may miss.
		if vm.Host != c.Host && vm.Observed.Host != c.Host && !o.State.Active() {
			continue
		}
		vm.Observed = Observed{Host: c.Host, State: o.State, Reason: o.Reason, Time: m.At, ViewIndex: c.View}
		if vm.Host != c.Host {
			continue
		}
		for _, inc := range s.openIncidentsWith(o.VM) {
			if !o.Attached.IsZero() {
				inc.end(PhaseStorage, m.At)
			}
			if o.State == xenctl.StateRunning {
				inc.end(PhaseStorage, m.At)
				inc.end(PhaseStart, m.At)
				inc.note("%s running on %s", o.VM, c.Host)
			}
			if s.maybeCloseIncident(inc, m.At) {
				closed = append(closed, inc.Timeline(true))
			}
		}
	}
	return closed, nil
}

// incidentDone reports whether each VM of inc runs on a host other than
// the failed one, or no longer wants to run.
func (s *State) incidentDone(inc *Incident) bool {
	if !inc.Closed.IsZero() {
		return false
	}
	for _, name := range inc.VMs {
		vm := s.VMs[name]
		if vm == nil || vm.Stopped || vm.Policy.Restart == RestartOff {
			continue
		}
		if vm.Host == "" || vm.Host == inc.Host || vm.Observed.Host != vm.Host || vm.Observed.State != xenctl.StateRunning {
			return false
		}
	}
	return true
}

// maybeCloseIncident closes inc when it is done.
func (s *State) maybeCloseIncident(inc *Incident, at time.Time) bool {
	if !s.incidentDone(inc) {
		return false
	}
	inc.close(at)
	return true
}

// incidentCloseCmd closes an incident whose VMs all run again but which no
// report closed (they were already running when it was fenced, say).
type incidentCloseCmd struct {
	ID string `json:"id"`
}

func (c *incidentCloseCmd) kind() string { return "incident.close" }

func (c *incidentCloseCmd) apply(s *State, m applyMeta) (any, error) {
	for _, inc := range s.Incidents {
		if inc.ID == c.ID {
			if !s.maybeCloseIncident(inc, m.At) {
				return nil, refuse("incident %s is closed or not done", c.ID)
			}
			return []string{inc.Timeline(true)}, nil
		}
	}
	return nil, fmt.Errorf("%w: %w: incident %q", ErrRefused, ErrNotFound, c.ID)
}

// restartCmd grants one local restart of a VM that stopped on a healthy host.
type restartCmd struct {
	VM    string `json:"vm"`
	Host  string `json:"host"`
	Count int    `json:"count"` // LocalRestarts the leader saw; makes a retry idempotent
}

func (c *restartCmd) kind() string { return "vm.restart" }

func (c *restartCmd) apply(s *State, m applyMeta) (any, error) {
	vm := s.VMs[c.VM]
	if vm == nil {
		return nil, fmt.Errorf("%w: %w: VM %q", ErrRefused, ErrNotFound, c.VM)
	}
	if vm.Host != c.Host || vm.LocalRestarts != c.Count {
		return nil, refuse("VM %s moved or was restarted meanwhile", c.VM)
	}
	vm.LocalRestarts++
	// The crash is answered: until the host reports again, the leader must
	// not count the same crash twice.
	vm.Observed = Observed{Host: c.Host, State: xenctl.StateUnknown, Reason: "local restart granted", Time: m.At}
	return vm.LocalRestarts, nil
}

// releaseCmd takes a VM off a healthy host so that it can move: the host
// stops it, and once it reports it stopped the VM is placed again.
type releaseCmd struct {
	VM     string `json:"vm"`
	Host   string `json:"host"`
	MoveTo string `json:"move_to,omitempty"`
	Reason string `json:"reason"`
}

func (c *releaseCmd) kind() string { return "vm.release" }

func (c *releaseCmd) apply(s *State, m applyMeta) (any, error) {
	vm := s.VMs[c.VM]
	if vm == nil {
		return nil, fmt.Errorf("%w: %w: VM %q", ErrRefused, ErrNotFound, c.VM)
	}
	if vm.Host != c.Host {
		return nil, refuse("VM %s is on %q, not %s", c.VM, vm.Host, c.Host)
	}
	if vm.Migrating != nil {
		return nil, refuse("VM %s is being live-migrated to %s", c.VM, vm.Migrating.To)
	}
	if c.MoveTo != "" {
		t, err := hostOf(s, c.MoveTo)
		if err != nil {
			return nil, err
		}
		if !eligibleHost(t) {
			return nil, refuse("host %s (%s, %s) cannot receive VM %s", c.MoveTo, t.Role, t.State, c.VM)
		}
	}
	if vm.Observed.Host != c.Host {
		// The host has not reported the VM since it was given it, so it
		// may run it (its report may be stuck behind a partition): it is
		// placed again only once that host said it stopped, or was fenced.
		vm.Observed = Observed{Host: c.Host, State: xenctl.StateUnknown, Reason: "released before its host reported it", Time: m.At}
	}
	vm.Host, vm.Released = "", m.Index
	vm.MoveTo = c.MoveTo
	vm.Pending = "moving: " + c.Reason
	vm.MigrateFailed = nil // it moves by stop and start now
	return nil, nil
}
