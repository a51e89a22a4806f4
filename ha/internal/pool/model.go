package pool

import (
	"maps"
	"slices"
	"time"
)

// HostState is where a host stands in the failure-handling life cycle.
type HostState string

// Host states.
const (
	HostJoining     HostState = "joining"
	HostOnline      HostState = "online"
	HostSuspect     HostState = "suspect"     // silent past DeadTime: fencing
	HostFenced      HostState = "fenced"      // a counting proof for its epoch is committed
	HostMaintenance HostState = "maintenance" // drained by an operator
	HostLeft        HostState = "left"
)

// Host is one member of the pool.
type Host struct {
	ID    string
	State HostState
	// Epoch bumps with every counting fence proof; anything the host says at
	// an older epoch is refused.
	Epoch   uint64
	Witness bool // votes, runs no VMs
	// MemKiB and CPUs are what the host offers; zero means not declared
	// (not limited).
	MemKiB int64
	CPUs   int
	Tags   []string
	// Lost lists storage pools the host can no longer reach.
	Lost []string
	// LiveMigrate: the host's hypervisor can send and receive live migrations.
	LiveMigrate bool
	// LastRenewal is when the leader applied the host's last lease renewal,
	// on the leader's clock (zero: never).
	LastRenewal time.Time
	// Fence is the state of the fencing of the host at its current epoch.
	Fence FenceStatus
}

// FenceStatus counts the fencing rounds of a suspect host.
type FenceStatus struct {
	Rounds    int       // failed rounds at this epoch
	RetryAt   time.Time // no new round before this
	Escalated bool      // the operator has been asked to act
}

// Restart says what happens to a VM whose host dies.
type Restart string

// Restart policies.
const (
	RestartAlways     Restart = "restart"     // restart elsewhere, stopping best-effort VMs to make room
	RestartBestEffort Restart = "best-effort" // restart where room is left
	RestartOff        Restart = "off"         // leave it stopped
)

// RunState is what a host reports about a VM.
type RunState string

// Run states.
const (
	RunUnknown RunState = ""
	Running    RunState = "running"
	Stopped    RunState = "stopped"
	Crashed    RunState = "crashed"
)

// Observed is a VM's state as a host last reported it.
type Observed struct {
	Host  string
	State RunState
	// View is the state index the reporting host had applied when it
	// looked: a report from before a release proves nothing about it.
	View uint64
}

// Migration is a live migration under way.
type Migration struct {
	From, To string
	ToEpoch  uint64
}

// VM is one protected virtual machine: its policy, then where it is.
type VM struct {
	Name     string
	Restart  Restart
	Priority int // higher first
	Order    int // start order within a priority, lower first
	// StartDelay is how long VMs of a higher Order wait after this one was
	// started, as XenServer's start-delay.
	StartDelay   time.Duration
	MemKiB       int64
	CPUs         int
	AntiAffinity string   // group: no two VMs of it on one host
	Affinity     string   // group: all VMs of it on one host
	Tags         []string // the host must carry all of them
	Preferred    []string // hosts, best first
	Failback     bool     // move back to a better host when it returns
	// MaxLocalRestarts is how often a VM that stopped on a healthy host is
	// restarted there before it is relocated.
	MaxLocalRestarts int
	Volumes          []string
	// Stopped is the operator's wish that the VM run nowhere.
	Stopped bool

	// Host is the desired placement; the host's agent runs the VM only while
	// Host is itself and OwnerEpoch its epoch.
	Host       string
	OwnerEpoch uint64
	// Assignment is the index of the transition that gave the VM its Host.
	// A host's agent starts a VM once per (Assignment, LocalRestarts): a new
	// assignment to the same host is a new start.
	Assignment    uint64
	AssignedAt    time.Time
	LocalRestarts int
	MoveTo        string // an operator's or drain's target
	// Released is the index at which the VM was taken off a healthy host.
	Released  uint64
	Observed  Observed
	Migrating *Migration
	// MigrateFailed: the last live migration failed; move by stop and start.
	MigrateFailed bool
	Pending       string // why an unplaced VM waits
}

// Volume is a VM disk.
type Volume struct {
	ID string
	// Pool is the storage a host must reach to use it ("" : any host).
	Pool string
	// Replicas lists the hosts holding a DRBD replica; when set, the VM runs
	// only on one of them.
	Replicas []string
}

// ProofKind says what a fence proof proves.
type ProofKind string

// Proof kinds.
const (
	// ProofVerifiedOff: a device confirmed the host is off (a BMC's power
	// status read back, a PDU outlet off). Its VMs may be placed at once.
	ProofVerifiedOff ProofKind = "verified-off"
	// ProofSelfFence: the host's watchdog or poison pill will have reset it
	// once its lease and the watchdog time ran out. It counts only after
	// ReassignAfter and Lease+WatchdogTimeout of silence.
	ProofSelfFence ProofKind = "self-fence"
	// ProofOperator: an operator said the host is off. It counts after
	// ReassignAfter of silence, as the host's lease may still run.
	ProofOperator ProofKind = "operator"
	// ProofUnverified: a device accepted the command but could not confirm
	// the result. It never counts.
	ProofUnverified ProofKind = "unverified"
)

// Counts reports whether a proof of this kind fences the host at all.
func (k ProofKind) Counts() bool {
	return k == ProofVerifiedOff || k == ProofSelfFence || k == ProofOperator
}

// Proof is a committed fence proof.
type Proof struct {
	Host   string
	Epoch  uint64
	Kind   ProofKind
	Method string
	At     time.Time
}

// Incident is one host failure from suspicion to the last VM moved.
type Incident struct {
	Host   string
	Epoch  uint64
	Opened time.Time
	Closed time.Time
	VMs    []string
	Notes  []string
}

// Backoff is the fence retry schedule.
type Backoff struct {
	Initial, Max time.Duration
	Factor       float64
}

// Timings are the pool's thresholds.
type Timings struct {
	DeadTime time.Duration // silence before a host is suspect
	InitDead time.Duration // the grace of a host never heard from since the leader started
	Lease    time.Duration // how long a renewal lets a host act
	// ReassignAfter is the silence after which a host's lease has run out
	// on its own clock too; it exceeds Lease.
	ReassignAfter time.Duration
	// WatchdogTimeout, when non-zero, lets the pool count a silent host as
	// self-fenced after Lease+WatchdogTimeout.
	WatchdogTimeout time.Duration
	FenceRetry      Backoff
	// EscalateAfter is the number of failed fence rounds after which an
	// operator is asked to power the host off and acknowledge it.
	EscalateAfter int
}

// State is the pool as the leader sees it.
type State struct {
	Index   uint64 // bumps with every transition
	Timings Timings
	// LeaderSince is when the current leader started: no silence counts
	// from before it.
	LeaderSince time.Time
	Hosts       map[string]*Host
	VMs         map[string]*VM
	Volumes     map[string]*Volume
	Proofs      []Proof
	Incidents   []*Incident
	Rules       Rules
}

// NewState returns an empty pool with timings t.
func NewState(t Timings) *State {
	return &State{Timings: t, Hosts: map[string]*Host{}, VMs: map[string]*VM{}, Volumes: map[string]*Volume{}}
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := *s
	c.Hosts = make(map[string]*Host, len(s.Hosts))
	for id, h := range s.Hosts {
		hc := *h
		hc.Tags, hc.Lost = slices.Clone(h.Tags), slices.Clone(h.Lost)
		c.Hosts[id] = &hc
	}
	c.VMs = make(map[string]*VM, len(s.VMs))
	for name, vm := range s.VMs {
		vc := *vm
		vc.Tags, vc.Preferred, vc.Volumes = slices.Clone(vm.Tags), slices.Clone(vm.Preferred), slices.Clone(vm.Volumes)
		if vm.Migrating != nil {
			m := *vm.Migrating
			vc.Migrating = &m
		}
		c.VMs[name] = &vc
	}
	c.Volumes = make(map[string]*Volume, len(s.Volumes))
	for id, v := range s.Volumes {
		vc := *v
		vc.Replicas = slices.Clone(v.Replicas)
		c.Volumes[id] = &vc
	}
	c.Proofs = slices.Clone(s.Proofs)
	c.Incidents = make([]*Incident, len(s.Incidents))
	for i, inc := range s.Incidents {
		ic := *inc
		ic.VMs, ic.Notes = slices.Clone(inc.VMs), slices.Clone(inc.Notes)
		c.Incidents[i] = &ic
	}
	c.Rules = s.Rules.clone()
	return &c
}

// silence is how long the leader has heard nothing from h at now: from its
// last renewal, but never from before the leader started.
func (s *State) silence(h *Host, now time.Time) time.Duration {
	from := s.LeaderSince
	if h.LastRenewal.After(from) {
		from = h.LastRenewal
	}
	return now.Sub(from)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
