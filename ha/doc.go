// Package ha turns a handful of Xen or KVM hosts into a self-healing pool.
// Every host runs a program that embeds a Cluster; the members replicate one
// State through Raft (hashicorp/raft on a bbolt log), the Raft leader acts as
// pool master, and when a host goes silent its VMs are restarted elsewhere,
// but only after the host is proven off (fence before recover) and never so
// that one VM runs on two hosts.
//
// # Forming a cluster
//
// Fill a Config (start from DefaultConfig, or FastLAN on a dedicated LAN),
// call New, then Bootstrap on the first member and Join on the others. A
// member restarted on its data directory rejoins on its own: Fresh reports
// whether Bootstrap or Join is needed. Members talk over mutual TLS (ha/pki
// makes a CA and member certificates; a member's certificate must name its
// ID), joins need the JoinToken, and peers of another ClusterID are refused.
// Raft and the cluster's own RPC (joins, forwarded writes, read indexes)
// share one TCP listener: the first byte of each connection picks the stream.
//
// # Who may act
//
// TLS proves who a peer is; the Raft configuration says whether it may act.
// Every Raft stream and every cluster RPC but the join is accepted only from
// a peer whose certificate names a member of this member's latest Raft
// configuration, checked at the hello and again on every request, so a
// removed member's certificate stops working at once. Raft requests from
// anyone else, and entries carrying a configuration that does not decode,
// are answered with an error before Raft sees them (ErrNotAuthorized). A
// member speaks only for its own host: the leader refuses a renewal, host
// record or report it forwards for another host, and any fence proof or
// piece of the leader's bookkeeping (placement, suspicion, membership)
// forwarded at all. Certificates with the operator role (OperatorOU, see
// ha/pki) may read and propose the administrative commands; they never
// speak Raft or join. A joiner accepts Raft traffic from the members it
// joined through until its own configuration names it; a member that
// missed a configuration change asks the members it knows to vouch for a
// leader it has not heard of.
//
// A data directory is used by one process at a time (a second gets an error
// naming the holder's PID); it is 0700 and its files 0600. A raft.db that
// is damaged, or that lost its term and vote beside a snapshot, is refused
// at start with an error saying what to do, never read into a panic or a
// silent reset.
//
// Up to MaxVoters (5) members vote; more join as non-voters and are promoted
// when a voter leaves. A witness votes but runs no VMs, the third vote of a
// two-host site. Remove and Leave refuse changes that would leave the
// remaining voters without a live majority (ErrQuorumAtRisk); with
// RemoveDeadAfter the leader removes long-dead members itself, never below
// three voters.
//
// # Commands and the state
//
// Every change is a typed command in a versioned envelope (version, kind,
// request ID, proposer time, body). Writes from any member are forwarded to
// the leader; a retry carries the same request ID and is applied once. A
// write whose outcome is unknown (leadership lost, deadline passed after it
// was sent) fails with ErrIndeterminate, never as a plain failure. State
// reads are Consistent (linearizable: the leader proves its leadership with
// a barrier and the reader waits until it has applied that far) or Stale
// (this member's state at once).
//
// Unknown-command policy: a member that meets a log entry it cannot apply (a
// kind or envelope version from a newer build, or a malformed entry) halts
// applying: its state stays at the last entry it understood, it does not
// snapshot (so the unapplied log is kept), it emits EventHalted and answers
// reads with ErrHalted. Upgrading and restarting it replays the log. Skipping
// the entry would silently diverge from the members that applied it.
// Leaders refuse forwarded commands they cannot decode, so unknown kinds
// reach the log only from a newer leader.
//
// A member that cannot write its Raft log (a full disk, an I/O error) emits
// EventStoreFailed. As leader it steps down, and the write fails with the
// disk's error; as a follower it falls behind, and writes made through it
// fail as indeterminate, saying they were committed but cannot be applied
// here, and why. The others carry on; once the disk works the member catches
// up (EventStoreRecovered). Nothing acknowledged is lost.
//
// Snapshots are the State as JSON in a versioned wrapper and restore exactly.
//
// # Failover
//
// Each member renews a lease through the log every KeepAlive; it runs VMs
// only while its last committed renewal (sent at t0) is younger than Lease,
// and before the lease ends without a renewal it isolates itself: the VM
// network is blocked first, then the VMs are paused (or destroyed or shut
// down, see IsolationResponse). The leader counts each host's silence from
// the last renewal it applied, never from before its own election. Past
// WarnTime it warns, past DeadTime it commits the host suspect and runs the
// host's fencer (a fence.Chain records every attempt); a proof committed for
// the host's epoch bumps the epoch, so nothing the host sends from before
// counts. Only with that proof are its VMs placed elsewhere (capacity,
// priority, order, anti-affinity, preferred hosts), their volumes handed over
// with a new generation in the same command, and the proof decides how long
// that waits:
//
//   - A verified power-off (fence.ProofVerifiedOff: a BMC's chassis status,
//     a fence agent's status, a destroyed domain read back as off) for the
//     incident still open lets them go at once (Host.ProvenOff).
//   - A self-fence (a poison pill, a watchdog) and an unverified proof wait
//     until the host has been silent for more than ReassignAfter (> Lease,
//     and ≥ Lease + WatchdogTimeout under AllowLeaseExpiry).
//
// Why no VM can run twice after a verified power-off: a host with no power
// runs nothing, so every copy it ran died when the device cut it, and what
// is left to rule out is a copy it starts later. A host starts VMs only
// under a valid lease, and a lease lives in memory, so a host switched on
// again has none until a renewal sent after the power-off commits. The
// fencer ran only after the suspect command was applied, so that renewal
// comes after it in the log: applied before the proof, it brings the host
// back online and closes the incident, and the proof, naming that incident,
// proves nothing (the VMs wait out the lease as after any other proof);
// applied after the proof, it carries the epoch the proof bumped and is
// refused. A proof for an earlier epoch is refused whatever its kind. A
// self-fence proves only that the host will kill itself, which it has
// certainly done once its lease and watchdog time have run out; an
// unverified proof proves nothing, and only the lease's end does.
//
// The target's agent attaches the storage, defines and starts the domain,
// unblocks its network and announces it. Every failover is an Incident with
// per-phase times (detect, fence, proof, place, storage, start). A new leader
// continues open incidents after a Barrier.
// Under FencePolicy AllowLeaseExpiry the leader also accepts silence longer
// than Lease + WatchdogTimeout as a fence, which is safe only because every
// VM host feeds its lease to a hardware watchdog (Config.Watchdog, e.g. a
// fence/watchdog Keeper) that resets it once the lease ends unrenewed.
// AckFence is the audited manual fence for a host an operator powered off;
// Maintenance drains a host, live-migrating where the hypervisors can;
// Migrate moves one VM. The design notes are in failover.md beside this file.
//
// # Events and logs
//
// Subscribe streams typed Events (leadership, membership, applied and
// refused commands, and the failover code's own) through a bounded buffer: a
// slow subscriber loses events (EventsDropped counts them) rather than slow
// the cluster. Logs, Raft's included, go to Config.Logger.
//
// # Testing
//
// ha/hatest runs whole clusters in one process, in memory or over TCP with
// bbolt, and crashes, restarts and partitions members.
package ha
