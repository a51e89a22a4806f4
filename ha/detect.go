package ha

import (
	"slices"
	"sync"
	"time"
)

// The detector turns "when did I last apply a renewal from host H" into
// verdicts. It runs on every member (onApplied feeds it) and is consulted by
// the leader. All times are this member's monotonic clock: time.Time values
// from time.Now carry a monotonic reading and Sub uses it, so a wall-clock
// step changes no verdict. It does no I/O and takes its clock as a function,
// so that tests drive it without sleeping.

// timings are the failure-detection thresholds, taken from Config.
type timings struct {
	KeepAlive     time.Duration
	WarnTime      time.Duration
	DeadTime      time.Duration
	InitDead      time.Duration
	Lease         time.Duration
	ReassignAfter time.Duration
	// WatchdogTimeout is set only under FencePolicy AllowLeaseExpiry.
	WatchdogTimeout time.Duration
}

// health is the detector's verdict on one host.
type health int

// Verdicts, in increasing order of silence.
const (
	healthOK   health = iota // renewing
	healthWarn               // silent past WarnTime
	healthDead               // silent past DeadTime (or InitDead for a host never heard)
)

func (h health) String() string {
	switch h {
	case healthWarn:
		return "warn"
	case healthDead:
		return "dead"
	}
	return "ok"
}

// hostVerdict is what the detector says about one host at one instant.
type hostVerdict struct {
	Host    string
	Health  health
	Silence time.Duration
	// Reassignable: silence is past ReassignAfter, so that the host's lease
	// has certainly run out on its own clock too. Fence-before-recover still
	// needs a committed fence record besides.
	Reassignable bool
	// LeaseExpired: silence is past Lease + WatchdogTimeout, so a host with a
	// working watchdog has reset itself (FencePolicy AllowLeaseExpiry only).
	LeaseExpired bool
	// Probe: the host has the grace that follows an election and renewed
	// before it, so the leader probes it; if it stays unreachable for
	// DeadTime, the grace ends early (see probed).
	Probe bool
}

// detector tracks renewals per host. Safe for concurrent use: onApplied
// writes while the leader's loop reads.
type detector struct {
	t   timings
	now func() time.Time

	mu      sync.Mutex
	self    string // this member's host ID ("" in tests: no log-stall allowance)
	started time.Time
	leader  time.Time // zero while not leader
	last    map[string]time.Time
	// jitter is each host's recent worst lateness: how much longer than
	// KeepAlive the gap between two of its applied renewals was (gaps up
	// to DeadTime), decaying by 1/32 per renewal (seconds at FastLAN's rate).
	jitter map[string]time.Duration
	// unreachable: when the current run of failed probes of a host began,
	// this leadership term only; a probe that answers ends the run.
	unreachable map[string]time.Time
}

func newDetector(t timings, now func() time.Time) *detector {
	if now == nil {
		now = time.Now
	}
	return &detector{t: t, now: now, started: now(), last: map[string]time.Time{}, jitter: map[string]time.Duration{},
		unreachable: map[string]time.Time{}}
}

// setSelf names this member's own host, whose renewals measure how late the
// log itself is.
func (d *detector) setSelf(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.self = id
}

// renewed records that a renewal from host was applied now.
func (d *detector) renewed(host string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if last, ok := d.last[host]; ok {
		// A gap longer than DeadTime is an outage (an election, a
		// partition), not jitter: it would have been judged as such.
		if gap := now.Sub(last); gap <= d.t.DeadTime {
			j := d.jitter[host]
			d.jitter[host] = max(gap-d.t.KeepAlive, j-j/32, 0)
		}
	}
	d.last[host] = now
}

// allowance is how much longer than DeadTime host may stay silent before it
// is dead: its own recent lateness (a host that is slow, not dead, renews
// late for a while before), at most DeadTime, plus how late this member's
// own renewals are now, up to Lease (a leader whose log stalls, on a busy
// disk or CPU, applies nobody's renewals, and that is no host's fault). Suspecting later
// is always safe: the proof and the lease, not detection, keep VMs single.
func (d *detector) allowanceLocked(host string, now time.Time) time.Duration {
	a := min(d.jitter[host], d.t.DeadTime)
	if last, ok := d.last[d.self]; ok && d.self != "" && host != d.self {
		// At most Lease: a member whose own renewals are later than that
		// lost its own lease, and must not spare everyone else for ever.
		a += min(max(now.Sub(last)-d.t.KeepAlive, 0), d.t.Lease)
	}
	return a
}

// forget drops a host (it left, or it was fenced and will re-register).
func (d *detector) forget(host string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.last, host)
	delete(d.jitter, host)
	delete(d.unreachable, host)
}

// probed records the outcome of a probe of host that the leader started at
// start: answered (ok) or not. A probe started before this leadership term
// says nothing about it and is ignored.
func (d *detector) probed(host string, start time.Time, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.leader.IsZero() || start.Before(d.leader) {
		return
	}
	if ok {
		delete(d.unreachable, host)
		return
	}
	if _, failing := d.unreachable[host]; !failing {
		d.unreachable[host] = start
	}
}

// becameLeader starts the leader's count. Silence is never counted from
// before this instant: a follower's record of renewals may lag the log, so a
// new leader gives every host a full period to prove itself.
func (d *detector) becameLeader() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.leader = d.now()
	clear(d.unreachable)
}

// lostLeadership stops the count.
func (d *detector) lostLeadership() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.leader = time.Time{}
	clear(d.unreachable)
}

// verdict judges one host. It is meaningful only on the leader: on a
// follower it reports every host as OK.
func (d *detector) verdict(host string) hostVerdict {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.verdictLocked(host, d.now())
}

func (d *detector) verdictLocked(host string, now time.Time) hostVerdict {
	v := hostVerdict{Host: host}
	if d.leader.IsZero() {
		return v
	}
	max := func(a, b time.Time) time.Time {
		if a.After(b) {
			return a
		}
		return b
	}
	last, seen := d.last[host]
	from := d.leader
	if seen && last.After(from) {
		from = last
	}
	v.Silence = now.Sub(from)
	dead := v.Silence > d.t.DeadTime+d.allowanceLocked(host, now)
	// A host not heard from since this member started or became leader gets
	// InitDead from that instant: it may still be booting, or still be
	// finding the new leader to send its renewals to. That spares live
	// hosts a fence after every election.
	//
	// A host that renewed before the grace began is not booting, so the
	// leader probes it. One that stays unreachable for DeadTime died (or is
	// cut off from the leader, and so cannot renew either): its grace ends,
	// and a host that died with the old leader is fenced without waiting
	// out InitDead. Reassignable still counts from the election, so this
	// only starts fencing sooner; it never moves a VM sooner.
	//
	// The grace ends once the host's latest probe failed and it has been
	// silent for longer than DeadTime, counted from the last renewal this
	// member applied (which after the election's Barrier includes every
	// committed one): that is the evidence a host is suspected on outside
	// an election, plus proof that it does not answer now. A live host that
	// merely could not renew while there was no leader answers the probe.
	if grace := max(d.started, d.leader); (!seen || !last.After(grace)) && now.Sub(grace) <= d.t.InitDead {
		v.Probe = seen
		_, failing := d.unreachable[host]
		dead = seen && failing && now.Sub(last) > d.t.DeadTime
	}
	switch {
	case dead:
		v.Health = healthDead
	case v.Silence > d.t.WarnTime:
		v.Health = healthWarn
	}
	v.Reassignable = v.Silence > d.t.ReassignAfter
	v.LeaseExpired = d.t.WatchdogTimeout > 0 && v.Silence > d.t.Lease+d.t.WatchdogTimeout
	return v
}

// verdicts judges the given hosts at one instant, sorted by host.
func (d *detector) verdicts(hosts []string) []hostVerdict {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	out := make([]hostVerdict, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, d.verdictLocked(h, now))
	}
	slices.SortFunc(out, func(a, b hostVerdict) int {
		if a.Host < b.Host {
			return -1
		}
		if a.Host > b.Host {
			return 1
		}
		return 0
	})
	return out
}
