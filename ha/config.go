package ha

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/netguard"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/xenctl"
)

// TLSConfig is a member's mutual-TLS identity: the cluster CA every peer's
// certificate must chain to, and this member's own certificate, which must
// name the member ID (as a DNS SAN). ha/pki creates both.
type TLSConfig struct {
	CA   *x509.CertPool
	Cert tls.Certificate
	// VerifyPeer, if set, is asked about every peer certificate that
	// chains to CA, on both ends of every connection, before the peer may
	// say anything: a revocation check, so that a revoked member or
	// operator certificate is refused on the cluster port too. An error
	// refuses the connection.
	VerifyPeer func(cert *x509.Certificate) error
}

// FencePolicy says what counts as proof that a silent host is off.
type FencePolicy string

// Fence policies.
const (
	// RequireFence (the default): a host's VMs move only after a fencer
	// confirmed it off (or an operator acknowledged it).
	RequireFence FencePolicy = "require-fence"
	// AllowLeaseExpiry also accepts silence longer than Lease +
	// WatchdogTimeout, for hosts whose hardware watchdog resets them when
	// their lease runs out. Needs WatchdogTimeout > 0.
	AllowLeaseExpiry FencePolicy = "allow-lease-expiry"
)

// IsolationAction is what a host does to its VMs when it loses its lease.
// Their network is always blocked first.
type IsolationAction string

// Isolation actions.
const (
	// IsolatePause suspends the VMs (reversible if the lease comes back with
	// the same epoch). The default when the hypervisor implements
	// xenctl.Pauser.
	IsolatePause IsolationAction = "pause"
	// IsolateDestroy powers the VMs off at once (the default otherwise).
	IsolateDestroy IsolationAction = "destroy"
	// IsolateShutdown asks the guests to shut down, destroying them after
	// IsolationResponse.Grace.
	IsolateShutdown IsolationAction = "shutdown"
)

// IsolationResponse is the isolation action and, for IsolateShutdown, the
// grace period. The zero value picks the default for the hypervisor.
type IsolationResponse struct {
	Action IsolationAction
	Grace  time.Duration
}

// Backoff is a retry schedule: Initial, multiplied by Factor after each
// failure, capped at Max.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
}

// Config configures one member. Start from DefaultConfig or FastLAN and fill
// in the identity fields; Validate says which field to change when something
// is unsafe.
type Config struct {
	// Identity and network.

	// ID names the member; it must be unique for the cluster's whole life
	// (a member whose data was wiped joins under a new ID).
	ID string
	// ClusterID names the cluster; members refuse peers of another cluster.
	ClusterID string
	// DataDir holds the Raft log (bbolt), snapshots and the member's
	// incarnation. Required unless InmemStore.
	DataDir string
	// BindAddr is the one TCP address that carries Raft and the cluster RPC.
	BindAddr string
	// AdvertiseAddr is how peers reach BindAddr; defaults to the listener's
	// address.
	AdvertiseAddr string
	// Role is how the member asks to join: RoleVoter (default; becomes a
	// non-voter while the cluster already has MaxVoters voters), RoleNonVoter,
	// or RoleWitness (votes, runs no VMs).
	Role Role
	// JoinToken must match between a joining member and the cluster.
	JoinToken string
	// TLS is the member's mutual-TLS identity. Required unless Insecure.
	TLS *TLSConfig
	// Insecure allows plaintext between members. Never set it on a network
	// others can reach.
	Insecure bool
	// Network listens and dials; nil means TCP. hatest substitutes a
	// partitionable network.
	Network Network
	// Logger receives the member's logs, Raft's included; nil discards.
	Logger *slog.Logger

	// Membership.

	// MaxVoters caps the voters (odd, 3..7; default 5). Further members
	// join as non-voters and are promoted when a voter leaves.
	MaxVoters int
	// RemoveDeadAfter, if positive, lets the leader remove a member it could
	// not reach for this long, never so many that the rest lose quorum.
	RemoveDeadAfter time.Duration

	// Raft timings.

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	// InmemStore keeps the log and snapshots in memory (tests only): a
	// member that crashes loses its state unless the harness kept the stores.
	InmemStore bool

	// Failure handling (the Heartbeat ha.cf names).

	KeepAlive time.Duration // lease renewal interval
	WarnTime  time.Duration // silence after which a warning event is sent
	DeadTime  time.Duration // silence after which a host is committed suspect and fencing starts
	// InitDead is the grace, after a member starts or a leader is elected,
	// for hosts not heard from since. A new leader probes the hosts that
	// renewed before its election and ends the grace of any it cannot reach
	// for DeadTime: that host died, most likely with the old leader.
	InitDead          time.Duration
	Lease             time.Duration // a renewal is valid for Lease from its send time
	ReassignAfter     time.Duration // silence after which a fenced host's VMs may be reassigned
	FencePolicy       FencePolicy
	WatchdogTimeout   time.Duration // for AllowLeaseExpiry
	FenceRetry        Backoff
	IsolationResponse IsolationResponse
	IsolationLead     time.Duration // how long before the lease ends the agent isolates

	// Plug-ins, local to this host and never replicated.

	Hypervisor xenctl.Hypervisor
	Fencer     fence.Fencer
	Guard      netguard.Guard
	Storage    map[string]storage.Backend // by storage.Volume.Kind
	// Capacity overrides what the hypervisor reports for this host.
	Capacity *Capacity
	// Watchdog, when set, is fed this host's lease: Feed(end) each time a
	// renewal commits and the lease grows, Feed(time.Time{}) when the lease
	// is lost. A fence/watchdog Keeper makes the lease self-enforcing: the
	// host resets at most its timeout after the lease ends. Required on
	// hosts that run VMs under FencePolicy AllowLeaseExpiry.
	Watchdog LeaseWatchdog
}

// LeaseWatchdog is fed a host's lease; *watchdog.Keeper (fence/watchdog) is
// one. Feed must not block.
type LeaseWatchdog interface {
	Feed(until time.Time)
}

// minRaftTimeout is the smallest Raft timeout Validate accepts: at 250 ms and
// below, elections were measured to fire spuriously under CPU load here.
const minRaftTimeout = 250 * time.Millisecond

// DefaultConfig is the conservative profile: Raft's 1 s defaults (p50 leader
// election 1.9 s measured here) and a lease of 8 s.
func DefaultConfig() Config {
	return Config{
		Role:               RoleVoter,
		MaxVoters:          5,
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   2 * time.Minute,
		KeepAlive:          time.Second,
		WarnTime:           3 * time.Second,
		DeadTime:           5 * time.Second,
		InitDead:           10 * time.Second,
		Lease:              8 * time.Second,
		ReassignAfter:      9 * time.Second,
		FencePolicy:        RequireFence,
		FenceRetry:         Backoff{Initial: 500 * time.Millisecond, Max: 10 * time.Second, Factor: 2},
		IsolationLead:      time.Second,
	}
}

// FastLAN is the profile for a dedicated, low-latency LAN: Raft at
// 500/500/250/25 ms (p50 election 0.9–1.0 s measured here, no spurious
// elections under load), renewals every 100 ms, suspect after 400 ms of
// silence, lease 800 ms, reassignment after 850 ms.
func FastLAN() Config {
	c := DefaultConfig()
	c.HeartbeatTimeout = 500 * time.Millisecond
	c.ElectionTimeout = 500 * time.Millisecond
	c.LeaderLeaseTimeout = 250 * time.Millisecond
	c.CommitTimeout = 25 * time.Millisecond
	c.KeepAlive = 100 * time.Millisecond
	c.WarnTime = 250 * time.Millisecond
	c.DeadTime = 400 * time.Millisecond
	c.InitDead = 2 * time.Second
	c.Lease = 800 * time.Millisecond
	c.ReassignAfter = 850 * time.Millisecond
	c.FenceRetry = Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Factor: 2}
	c.IsolationLead = 150 * time.Millisecond
	return c
}

// Validate reports the first unsafe or inconsistent setting as a
// *ConfigError naming the field to change. It does not modify c.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if err := checkName(c.ID); err != nil {
		return bad("ID", "%v", err)
	}
	if err := checkName(c.ClusterID); err != nil {
		return bad("ClusterID", "%v", err)
	}
	if c.DataDir == "" && !c.InmemStore {
		return bad("DataDir", "empty: set a directory for the Raft log and snapshots (InmemStore is for tests only)")
	}
	if c.BindAddr == "" {
		return bad("BindAddr", "empty: set the address to listen on, e.g. 198.18.0.1:7946")
	}
	switch c.Role {
	case "", RoleVoter, RoleNonVoter, RoleWitness:
	default:
		return bad("Role", "%q is not a role: use RoleVoter, RoleNonVoter or RoleWitness", c.Role)
	}
	if c.TLS == nil && !c.Insecure {
		return bad("TLS", "nil: members talk over mutual TLS (see ha/pki); set Insecure: true only for plaintext on a private test network")
	}
	if c.TLS != nil && c.Insecure {
		return bad("Insecure", "true together with TLS: choose one")
	}
	if c.TLS != nil && (c.TLS.CA == nil || len(c.TLS.Cert.Certificate) == 0) {
		return bad("TLS", "needs both CA and Cert (ha/pki creates them)")
	}
	if c.JoinToken == "" {
		return bad("JoinToken", "empty: set a secret shared by the cluster's members")
	}
	if c.MaxVoters != 0 && (c.MaxVoters < 3 || c.MaxVoters > 7 || c.MaxVoters%2 == 0) {
		return bad("MaxVoters", "%d: use an odd number from 3 to 7 (5 is usual)", c.MaxVoters)
	}
	if c.RemoveDeadAfter < 0 {
		return bad("RemoveDeadAfter", "negative (%v): use 0 to disable automatic removal", c.RemoveDeadAfter)
	}
	for _, t := range []struct {
		name string
		v    time.Duration
	}{
		{"HeartbeatTimeout", c.HeartbeatTimeout},
		{"ElectionTimeout", c.ElectionTimeout},
		{"LeaderLeaseTimeout", c.LeaderLeaseTimeout},
	} {
		if t.v < minRaftTimeout {
			return bad(t.name, "%v is below %v: shorter Raft timeouts elect spuriously under load; use FastLAN() values or more", t.v, minRaftTimeout)
		}
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return bad("LeaderLeaseTimeout", "%v must not exceed HeartbeatTimeout (%v): lower LeaderLeaseTimeout", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.CommitTimeout <= 0 || c.CommitTimeout > c.HeartbeatTimeout {
		return bad("CommitTimeout", "%v must be positive and at most HeartbeatTimeout (%v)", c.CommitTimeout, c.HeartbeatTimeout)
	}
	if c.SnapshotThreshold == 0 {
		return bad("SnapshotThreshold", "0: set how many log entries trigger a snapshot (8192 is usual)")
	}
	if c.SnapshotInterval <= 0 {
		return bad("SnapshotInterval", "%v: set how often to check for a snapshot (2m is usual)", c.SnapshotInterval)
	}
	if err := c.validateTimings(); err != nil {
		return err
	}
	// The failover code (config_failover.go) checks its own fields.
	return validateFailover(c)
}

// validateTimings checks the lease relations the safety rules depend on:
// a host's lease must end before anyone may reassign its VMs.
func (c *Config) validateTimings() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if c.KeepAlive <= 0 {
		return bad("KeepAlive", "%v: set the lease renewal interval (1s default, 100ms on FastLAN)", c.KeepAlive)
	}
	if c.WarnTime < c.KeepAlive {
		return bad("WarnTime", "%v is shorter than KeepAlive (%v): raise WarnTime", c.WarnTime, c.KeepAlive)
	}
	if c.DeadTime <= c.WarnTime {
		return bad("DeadTime", "%v must be longer than WarnTime (%v): raise DeadTime", c.DeadTime, c.WarnTime)
	}
	if c.Lease <= c.DeadTime {
		return bad("Lease", "%v must be longer than DeadTime (%v): a host would be fenced while its lease still lets it run; raise Lease or lower DeadTime", c.Lease, c.DeadTime)
	}
	if c.Lease < 2*c.KeepAlive {
		return bad("Lease", "%v must be at least two KeepAlive intervals (%v): raise Lease", c.Lease, 2*c.KeepAlive)
	}
	if c.ReassignAfter <= c.Lease {
		return bad("ReassignAfter", "Lease (%v) must be shorter than ReassignAfter (%v): raise ReassignAfter or lower Lease", c.Lease, c.ReassignAfter)
	}
	if c.IsolationLead < 0 || c.IsolationLead >= c.Lease {
		return bad("IsolationLead", "%v must be between 0 and Lease (%v)", c.IsolationLead, c.Lease)
	}
	if c.InitDead < 0 {
		return bad("InitDead", "negative (%v)", c.InitDead)
	}
	switch c.FencePolicy {
	case "", RequireFence:
	case AllowLeaseExpiry:
		if c.WatchdogTimeout <= 0 {
			return bad("WatchdogTimeout", "must be positive with FencePolicy AllowLeaseExpiry: set the hardware watchdog's timeout, or use RequireFence")
		}
		if c.ReassignAfter < c.Lease+c.WatchdogTimeout {
			return bad("ReassignAfter", "%v must be at least Lease + WatchdogTimeout (%v) with AllowLeaseExpiry: raise ReassignAfter", c.ReassignAfter, c.Lease+c.WatchdogTimeout)
		}
	default:
		return bad("FencePolicy", "%q: use RequireFence or AllowLeaseExpiry", c.FencePolicy)
	}
	switch c.IsolationResponse.Action {
	case "", IsolatePause, IsolateDestroy:
	case IsolateShutdown:
		if c.IsolationResponse.Grace <= 0 || c.IsolationResponse.Grace >= c.IsolationLead {
			return bad("IsolationResponse", "shutdown grace %v must be positive and shorter than IsolationLead (%v), or the VMs would still run when the lease ends", c.IsolationResponse.Grace, c.IsolationLead)
		}
	default:
		return bad("IsolationResponse", "%q: use IsolatePause, IsolateDestroy or IsolateShutdown", c.IsolationResponse.Action)
	}
	return nil
}

// checkName accepts IDs usable as certificate DNS names and file names.
func checkName(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", s)
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1
		if !ok {
			return fmt.Errorf("%q: use lower-case letters, digits and inner hyphens (it is a DNS name in the member certificate)", s)
		}
	}
	return nil
}

// withDefaults fills zero fields that have a safe default.
func (c Config) withDefaults() Config {
	if c.Role == "" {
		c.Role = RoleVoter
	}
	if c.MaxVoters == 0 {
		c.MaxVoters = 5
	}
	if c.FencePolicy == "" {
		c.FencePolicy = RequireFence
	}
	if c.Network == nil {
		c.Network = TCP{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
