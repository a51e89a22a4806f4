package ha

import (
	"context"
	"errors"
	"sync"
	"time"
)

// A host's lease: a host runs VMs only under it, so that leadership is
// never taken for ownership. The host records its monotonic time t0
// before it proposes lease.renew; once the renewal commits unrefused, the
// lease is valid until t0 + Lease on the host's own clock. The leader counts
// silence from the moment it applied the renewal, which is after t0, and
// reassigns only after ReassignAfter > Lease of silence: by then the host's
// own clock has also run past its lease, whatever the delays in between
// (clock rates are assumed to agree within the margin ReassignAfter − Lease).

// hostLease is this member's own lease.
type hostLease struct {
	mu    sync.Mutex
	epoch uint64
	until time.Time // monotonic; zero when there is no valid lease
	// changed is closed and replaced whenever the lease is extended or
	// lost, so the agent wakes at once.
	changed chan struct{}
	// watchdog is fed every change of until, under mu so that feeds
	// arrive in order (nil: no watchdog).
	watchdog LeaseWatchdog
}

func newHostLease(w LeaseWatchdog) *hostLease {
	return &hostLease{changed: make(chan struct{}), watchdog: w}
}

// changedLocked wakes the agent and feeds the watchdog. Call with l.mu held.
func (l *hostLease) changedLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
	if l.watchdog != nil {
		l.watchdog.Feed(l.until)
	}
}

// extend records a committed renewal sent at t0 for epoch.
func (l *hostLease) extend(epoch uint64, t0 time.Time, lease time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if epoch != l.epoch {
		return // a renewal from before a fence: worthless
	}
	if end := t0.Add(lease); end.After(l.until) {
		l.until = end
		l.changedLocked()
	}
}

// lose drops the lease (the host was fenced) and moves to epoch.
func (l *hostLease) lose(epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.until = time.Time{}
	l.epoch = epoch
	l.changedLocked()
}

// setEpoch adopts epoch if the lease holds none yet (a fresh start).
func (l *hostLease) setEpoch(epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.until.IsZero() {
		l.epoch = epoch
	}
}

// snapshot returns the epoch, the lease end and a channel closed on change.
func (l *hostLease) snapshot() (epoch uint64, until time.Time, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch, l.until, l.changed
}

// status says whether the agent may act at now: only until IsolationLead
// before the lease ends.
func (l *hostLease) status(now time.Time, lead time.Duration) (leaseStatus, uint64) {
	epoch, until, _ := l.snapshot()
	if until.IsZero() || !now.Before(until.Add(-lead)) {
		return leaseIsolating, epoch
	}
	return leaseValid, epoch
}

// renewLoop proposes a renewal every KeepAlive for the member's life. Each
// renewal runs on its own, bounded by the lease it would grant: one stuck
// behind a partition must not delay the next, and one that commits after
// its own lease would have ended is worthless anyway.
func (f *failover) renewLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.KeepAlive)
	defer t.Stop()
	inflight := make(chan struct{}, max(2, int(f.cfg.Lease/f.cfg.KeepAlive)))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case inflight <- struct{}{}:
		default:
			continue // as many renewals in flight as could matter
		}
		// The slot is freed when the renewal returns or its lease would
		// have ended, whichever comes first: a proposal stuck past its
		// context must not use up the slots and starve later renewals.
		var once sync.Once
		free := func() { once.Do(func() { <-inflight }) }
		timer := time.AfterFunc(f.cfg.Lease+f.cfg.KeepAlive, free)
		go func() {
			defer timer.Stop()
			defer free()
			f.renewOnce(ctx)
		}()
	}
}

func (f *failover) renewOnce(ctx context.Context) {
	var known bool
	var hostEpoch uint64
	var state HostState
	f.c.read(func(s *State) {
		if h := s.Hosts[f.cfg.ID]; h != nil {
			known, hostEpoch, state = true, h.Epoch, h.State
		}
	})
	if !known || state == HostLeft {
		return // not (or no longer) a member: nothing to renew
	}
	if state == HostFenced {
		// Seen in the log before any refusal: the same medicine.
		f.fenced(ctx)
		return
	}
	f.lease.setEpoch(hostEpoch)
	epoch, _, _ := f.lease.snapshot()
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, f.cfg.Lease)
	defer cancel()
	_, err := f.c.propose(rctx, &renewCmd{Host: f.cfg.ID, Epoch: epoch, Sent: t0})
	switch {
	case err == nil:
		f.lease.extend(epoch, t0, f.cfg.Lease)
	case errors.Is(err, ErrStaleEpoch):
		f.fenced(ctx)
	default:
		f.log.Debug("lease renewal failed; the lease runs out on its own if this goes on", "epoch", epoch, "err", err)
	}
}

// fenced handles the discovery that this host was fenced while it lived (a
// proof landed although it was up, e.g. behind a partition): it gives up
// its lease, has the agent destroy every cluster VM it runs, and registers
// again at the new epoch. Only one runs at a time.
func (f *failover) fenced(ctx context.Context) {
	if !f.reregistering.CompareAndSwap(false, true) {
		return
	}
	defer f.reregistering.Store(false)
	var epoch uint64
	f.c.read(func(s *State) {
		if h := s.Hosts[f.cfg.ID]; h != nil {
			epoch = h.Epoch
		}
	})
	f.log.Warn("this host was fenced: destroying its VMs and registering again", "epoch", epoch)
	f.emit(Event{Kind: EventHostFenced, Host: f.cfg.ID, Message: "this host was fenced while running: destroying its VMs and registering again"})
	f.lease.lose(epoch)
	if f.agent != nil {
		if err := f.agent.destroyAll(ctx); err != nil {
			// Without certainty that nothing runs, registering would invite
			// a second copy; the next renewal tries again.
			f.log.Error("could not destroy VMs after being fenced; not registering yet", "err", err)
			return
		}
	}
	rctx, cancel := context.WithTimeout(ctx, f.cfg.Lease)
	defer cancel()
	if _, err := f.c.propose(rctx, &registerCmd{Host: f.cfg.ID, Epoch: epoch, Capacity: f.capacity(ctx), MigrateURI: f.migrateURI()}); err != nil {
		f.log.Warn("registering after a fence failed; retrying with the next renewal", "epoch", epoch, "err", err)
	}
}
