package watchdog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xenha/xenha/fence"
)

// Method is the method name in proofs and errors.
const Method = "watchdog"

// Expiry is when a host whose last lease renewal the leader applied at
// lastRenewal is provably dead: its keeper stopped petting by lastRenewal +
// lease at the latest (the renewal was sent before it was applied), and its
// watchdog fired at most timeout after the last pet. margin covers clock-rate
// error between hosts and scheduling delay of the keeper; a tenth of
// (lease + timeout), and at least a second, is a sensible choice.
//
// lastRenewal must be on the leader's clock and, after an election, no
// earlier than the new leader's own election time: a new leader does not
// know what its predecessor applied.
func Expiry(lastRenewal time.Time, lease, timeout, margin time.Duration) time.Time {
	return lastRenewal.Add(lease + timeout + margin)
}

// LastRenewal returns when the leader last applied a lease renewal for host
// (see Expiry for which time), or an error wrapping fence.ErrUnknownHost.
type LastRenewal func(ctx context.Context, host string) (time.Time, error)

// Fencer proves a silent host dead by waiting out its lease and watchdog.
// It implements fence.Fencer. It fences nothing by itself: it is only sound
// when every host runs a Keeper fed from its committed lease.
type Fencer struct {
	last    LastRenewal
	lease   time.Duration
	timeout time.Duration
	margin  time.Duration
	now     func() time.Time
}

// FencerOption configures a Fencer.
type FencerOption func(*Fencer)

// WithMargin sets the safety margin added to lease + timeout (default a
// tenth of their sum, at least 1s).
func WithMargin(d time.Duration) FencerOption { return func(f *Fencer) { f.margin = d } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) FencerOption { return func(f *Fencer) { f.now = now } }

// NewFencer returns a Fencer for hosts whose leases last lease and whose
// watchdogs fire timeout after the last keep-alive.
func NewFencer(last LastRenewal, lease, timeout time.Duration, opts ...FencerOption) (*Fencer, error) {
	if last == nil {
		return nil, errors.New("watchdog: NewFencer needs a LastRenewal function")
	}
	if lease <= 0 || timeout <= 0 {
		return nil, fmt.Errorf("watchdog: lease %s and watchdog timeout %s must be positive", lease, timeout)
	}
	f := &Fencer{last: last, lease: lease, timeout: timeout, margin: -1, now: time.Now}
	for _, o := range opts {
		o(f)
	}
	if f.margin < 0 {
		f.margin = max((lease+timeout)/10, time.Second)
	}
	return f, nil
}

// Fence waits until the host's expiry (see Expiry) and returns a proof,
// unless a renewal from the host is applied meanwhile: then the host is
// alive and Fence fails with fence.ErrNotOff.
func (f *Fencer) Fence(ctx context.Context, host string) (fence.Proof, error) {
	fail := func(step string, err error) (fence.Proof, error) {
		return fence.Proof{}, &fence.Error{Host: host, Method: Method, Step: step, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return fail("last renewal", err)
	}
	seen, err := f.last(ctx, host)
	if err != nil {
		return fail("last renewal", err)
	}
	for {
		expiry := Expiry(seen, f.lease, f.timeout, f.margin)
		if wait := expiry.Sub(f.now()); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fail("wait expiry", fmt.Errorf("host's lease and watchdog expire at %s, %s from now: %w",
					expiry.Format(time.RFC3339Nano), expiry.Sub(f.now()).Round(time.Millisecond), ctx.Err()))
			}
		}
		again, err := f.last(ctx, host)
		if err != nil {
			return fail("last renewal", err)
		}
		if again.After(seen) {
			return fail("wait expiry", fmt.Errorf("host renewed its lease at %s while we waited; it is alive: %w",
				again.Format(time.RFC3339Nano), fence.ErrNotOff))
		}
		if !f.now().Before(expiry) {
			ev := fmt.Sprintf("last lease renewal applied at %s; lease %s + watchdog %s + margin %s expired at %s with no renewal since",
				seen.Format(time.RFC3339Nano), f.lease, f.timeout, f.margin, expiry.Format(time.RFC3339Nano))
			return fence.Proof{Host: host, Method: Method, Evidence: ev, Time: expiry, Kind: fence.ProofSelfFence}, nil
		}
	}
}

var _ fence.Fencer = (*Fencer)(nil)
