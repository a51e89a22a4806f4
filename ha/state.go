package ha

import (
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/xenctl"
)

// The replicated state: hosts, VMs, volumes, fence records and incidents.
// Everything here is changed only by applying committed commands, so every member holds the same values at the same log
// index. Times in it come from the command that set them (the proposer's clock),
// never from the applying member's clock, so that apply is deterministic.

// Role is a member's part in the Raft configuration.
type Role string

// Roles.
const (
	RoleVoter    Role = "voter"    // votes and runs VMs
	RoleNonVoter Role = "nonvoter" // replicates and runs VMs; promoted when a voter leaves
	RoleWitness  Role = "witness"  // votes, runs no VMs: the third vote of a two-host site
)

// HostState is where a host stands in the failure-handling life cycle.
type HostState string

// Host states.
const (
	HostJoining     HostState = "joining"
	HostOnline      HostState = "online"
	HostSuspect     HostState = "suspect"     // missed renewals past DeadTime; fencing may start
	HostFenced      HostState = "fenced"      // a fence proof for its epoch is committed
	HostMaintenance HostState = "maintenance" // drained by an operator; runs nothing
	HostLeft        HostState = "left"
)

// Capacity is what a host offers to VMs, or what a VM needs.
type Capacity struct {
	MemoryKiB uint64 `json:"memory_kib"`
	VCPUs     int    `json:"vcpus"`
}

// Host is one cluster member.
type Host struct {
	ID       string    `json:"id"`
	Addr     string    `json:"addr"`
	Role     Role      `json:"role"`
	Capacity Capacity  `json:"capacity"`
	State    HostState `json:"state"`
	Since    time.Time `json:"since"` // when State last changed
	// Epoch is the host's lease epoch. Every committed fence of the host bumps
	// it, and a renewal or report carrying an older epoch is refused, so a host
	// that was fenced can never act on its old ownership again.
	Epoch uint64 `json:"epoch"`
	// Incarnation identifies the member's data directory (random, made when
	// the directory was first used). A join under a known ID with another
	// incarnation is refused: that member lost its data and must join under
	// a new ID.
	Incarnation string `json:"incarnation,omitempty"`
	// MigrateURI is where other hosts' hypervisors send live migrations to
	// this one (empty when it cannot receive them).
	MigrateURI string `json:"migrate_uri,omitempty"`
	// LeaseSent is the host's own clock when it sent its last committed
	// renewal. Informational: validity is judged on each side's monotonic clock.
	LeaseSent time.Time `json:"lease_sent"`
	// ProvenOff is set when the host's last fence is a verified power-off
	// (fence.ProofVerifiedOff) run for the incident still open, with no
	// renewal applied since the host was suspected: nothing it ran can run
	// now, so its VMs may be placed without waiting out its lease. It is
	// cleared when the host registers again.
	ProvenOff bool `json:"proven_off,omitempty"`
}

// RestartPolicy says what xenha does when a VM's host dies.
type RestartPolicy string

// Restart policies.
const (
	RestartAlways     RestartPolicy = "restart"     // restart it elsewhere; make room by stopping best-effort VMs
	RestartBestEffort RestartPolicy = "best-effort" // restart it where room is left
	RestartOff        RestartPolicy = "off"         // leave it stopped
)

// Policy is a VM's HA policy.
type Policy struct {
	Restart  RestartPolicy `json:"restart"`
	Priority int           `json:"priority"` // higher first
	Order    int           `json:"order"`    // start order within a priority, lower first
	// AntiAffinity names a group; no two running VMs of a group share a host.
	AntiAffinity string   `json:"anti_affinity,omitempty"`
	Preferred    []string `json:"preferred,omitempty"` // hosts, best first
	Failback     bool     `json:"failback,omitempty"`  // move back to Preferred[0] when it returns
	// MaxLocalRestarts is how often a VM that crashed on a healthy host is
	// restarted there before it is relocated.
	MaxLocalRestarts int `json:"max_local_restarts"`
}

// VMSpec is what a host needs to run a VM.
type VMSpec struct {
	DomainXML string   `json:"domain_xml"` // defined on the target before start
	MemoryKiB uint64   `json:"memory_kib"`
	VCPUs     int      `json:"vcpus"`
	MACs      []string `json:"macs,omitempty"`    // guarded by netguard
	Addrs     []string `json:"addrs,omitempty"`   // announced after unblocking
	Volumes   []string `json:"volumes,omitempty"` // Volume IDs
}

// Observed is a VM's state as its host last reported it.
type Observed struct {
	Host   string       `json:"host,omitempty"`
	State  xenctl.State `json:"state"`
	Reason string       `json:"reason,omitempty"`
	Time   time.Time    `json:"time"`
	// ViewIndex is the state index the reporting host's agent had applied
	// when it looked: a report made before a release does not prove that the
	// host will not start the VM again.
	ViewIndex uint64 `json:"view_index,omitempty"`
}

// VM is one protected virtual machine.
type VM struct {
	Name   string `json:"name"`
	UUID   string `json:"uuid"`
	Spec   VMSpec `json:"spec"`
	Policy Policy `json:"policy"`
	// Stopped is the operator's wish that the VM not run anywhere.
	Stopped bool `json:"stopped,omitempty"`
	// Deleting is set by DeleteVM on a VM that runs or may still run: it is
	// stopped and unplaced, and leaves the state once the host it was last
	// on reported it stopped (or left, or was fenced).
	Deleting bool `json:"deleting,omitempty"`
	// Host is the desired placement, empty while unplaced. A host agent runs
	// the VM only if Host is itself and OwnerEpoch equals its own epoch.
	Host       string `json:"host,omitempty"`
	OwnerEpoch uint64 `json:"owner_epoch"`
	// Pending says why an unplaced VM waits ("no capacity", "fence of h2").
	Pending string `json:"pending,omitempty"`
	// MoveTo is an operator's wish (Migrate, maintenance) that the VM run on
	// that host next; placement honours it when the host has room.
	MoveTo        string `json:"move_to,omitempty"`
	LocalRestarts int    `json:"local_restarts"`
	// Assigned is the log index of the command that gave the VM its Host.
	// A host's agent starts a VM once per assignment and restart grant: a
	// VM given back to a host that ran it before is a new start there.
	Assigned uint64 `json:"assigned,omitempty"`
	// Released is the log index at which the VM was last taken off a
	// healthy host (migration, drain, relocation); it may run elsewhere
	// only after that host reported it stopped from a view at least this new.
	Released uint64   `json:"released,omitempty"`
	Observed Observed `json:"observed"`
	// Migrating is set while the VM is live-migrated from Host to another
	// host; the hypervisors hand it over, and neither agent starts or stops it.
	Migrating *Migration `json:"migrating,omitempty"`
	// MigrateFailed is the last failed live migration of the VM from its
	// current host, with the hypervisor's error. While it is set the VM
	// moves off this host by stop and start only (a drain falls back to it,
	// under any leader); an operator's Migrate tries live once more. It is
	// cleared when the VM is released or gets a new host.
	MigrateFailed *MigrateFailure `json:"migrate_failed,omitempty"`
}

// MigrateFailure records a live migration that failed; the VM kept running
// on From.
type MigrateFailure struct {
	From  string    `json:"from"`
	To    string    `json:"to"`
	Error string    `json:"error"`
	Time  time.Time `json:"time"`
}

// Migration is a live migration under way.
type Migration struct {
	From    string `json:"from"`
	To      string `json:"to"`
	ToEpoch uint64 `json:"to_epoch"` // the target's epoch when it began
}

// Volume is a VM disk and its single writer.
type Volume struct {
	storage.Volume
	// Writer is the host allowed to write; Generation (in storage.Volume) bumps
	// each time Writer changes, and only after the old writer was fenced.
	Writer string `json:"writer,omitempty"`
}

// FenceAttempt is one try of one method.
type FenceAttempt struct {
	Method   string        `json:"method"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	Err      string        `json:"err,omitempty"`
}

// FenceRecord is a committed proof that a host was off at an epoch.
type FenceRecord struct {
	Host     string         `json:"host"`
	Epoch    uint64         `json:"epoch"`
	Method   string         `json:"method"`
	Evidence string         `json:"evidence"`
	Time     time.Time      `json:"time"`
	Attempts []FenceAttempt `json:"attempts,omitempty"`
	// Manual marks an operator's acknowledgement that the host is off (the
	// audited equivalent of xe vm-reset-powerstate --force), with who said so.
	Manual   bool   `json:"manual,omitempty"`
	Operator string `json:"operator,omitempty"`
	// Proof is what the record proves, a fence.ProofKind's String
	// ("verified-off", "self-fence"); empty is unverified (records from
	// before proof kinds existed read as such).
	Proof string `json:"proof,omitempty"`
}

// Phase is one timed step of an incident.
type Phase struct {
	Name  string    `json:"name"` // detect, fence, storage, place, start
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Duration is the phase's length, or zero while it is open.
func (p Phase) Duration() time.Duration {
	if p.End.IsZero() {
		return 0
	}
	return p.End.Sub(p.Start)
}

// Incident is the timeline of one host failure and its recovery.
type Incident struct {
	ID     string    `json:"id"`
	Host   string    `json:"host"`
	Epoch  uint64    `json:"epoch"`
	Opened time.Time `json:"opened"`
	Closed time.Time `json:"closed,omitzero"`
	Phases []Phase   `json:"phases"`
	VMs    []string  `json:"vms"`
	Notes  []string  `json:"notes,omitempty"`
	// Attempts are the fence attempts made for this incident, failed ones
	// included, newest last (bounded).
	Attempts []FenceAttempt `json:"attempts,omitempty"`
}

// State is the whole replicated state.
type State struct {
	Version   int                `json:"version"`
	ClusterID string             `json:"cluster_id"`
	Index     uint64             `json:"index"` // last applied log index
	Hosts     map[string]*Host   `json:"hosts"`
	VMs       map[string]*VM     `json:"vms"`
	Volumes   map[string]*Volume `json:"volumes"`
	Fences    []FenceRecord      `json:"fences"`    // newest last, bounded
	Incidents []*Incident        `json:"incidents"` // newest last, bounded
	// Requests remembers recently applied request IDs, so that a retried
	// command is applied once (bounded, oldest dropped first).
	Requests map[string]uint64 `json:"requests"`
}
