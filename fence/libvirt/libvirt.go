package libvirt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/xenctl"
)

// Method is the method name in proofs and errors.
const Method = "libvirt"

// Target is the domain that is the host.
type Target struct {
	// Hypervisor is the outer hypervisor that runs the host's domain.
	Hypervisor xenctl.Hypervisor
	// Domain is the host's domain name there.
	Domain string
	// Label names the outer hypervisor in evidence and errors (e.g. its URI).
	Label string
	// Transient: the domain is transient, so "no such domain" after a
	// destroy means it stopped. Leave false for persistent domains, where a
	// missing domain means a configuration error.
	Transient bool
}

func (t Target) label() string {
	if t.Label != "" {
		return t.Label
	}
	return "outer hypervisor"
}

// Fencer destroys hosts' domains. It implements fence.Fencer,
// fence.StatusReader and fence.Unfencer.
type Fencer struct {
	targets map[string]Target
	verify  time.Duration
	poll    time.Duration
	now     func() time.Time
}

// Option configures a Fencer.
type Option func(*Fencer)

// WithVerifyTimeout bounds how long Fence waits for the domain to read as
// stopped after destroy (default 10s).
func WithVerifyTimeout(d time.Duration) Option { return func(f *Fencer) { f.verify = d } }

// WithPollInterval sets the pause between state reads (default 100ms).
func WithPollInterval(d time.Duration) Option { return func(f *Fencer) { f.poll = d } }

// WithClock replaces time.Now for proof timestamps.
func WithClock(now func() time.Time) Option { return func(f *Fencer) { f.now = now } }

// New returns a Fencer for the given hosts.
func New(targets map[string]Target, opts ...Option) (*Fencer, error) {
	f := &Fencer{targets: map[string]Target{}, verify: 10 * time.Second, poll: 100 * time.Millisecond, now: time.Now}
	for _, o := range opts {
		o(f)
	}
	if f.verify <= 0 || f.poll <= 0 {
		return nil, errors.New("libvirt: verify timeout and poll interval must be positive")
	}
	for h, t := range targets {
		if t.Hypervisor == nil || t.Domain == "" {
			return nil, fmt.Errorf("libvirt: target for host %q needs a hypervisor and a domain name", h)
		}
		f.targets[h] = t
	}
	return f, nil
}

// Hosts returns the configured hosts, sorted.
func (f *Fencer) Hosts() []string {
	return slices.Sorted(maps.Keys(f.targets))
}

func (f *Fencer) fail(host, step string, t Target, err error) error {
	if errors.Is(err, xenctl.ErrUnavailable) {
		err = fmt.Errorf("%s: %w (%w)", t.label(), fence.ErrUnreachable, err)
	} else if t.Hypervisor != nil {
		err = fmt.Errorf("%s: %w", t.label(), err)
	}
	return &fence.Error{Host: host, Method: Method, Step: step, Err: err}
}

func (f *Fencer) target(ctx context.Context, host, step string) (Target, error) {
	t, ok := f.targets[host]
	if !ok {
		return t, &fence.Error{Host: host, Method: Method, Step: step, Err: fence.ErrUnknownHost}
	}
	if err := ctx.Err(); err != nil {
		return t, &fence.Error{Host: host, Method: Method, Step: step, Err: err}
	}
	return t, nil
}

// vanished is the reason given to a transient domain that is gone.
const vanished = "vanished (transient)"

// state reads the domain; stopped reports whether it is not active (or, for
// a transient target, gone).
func (f *Fencer) state(ctx context.Context, host, step string, t Target) (d xenctl.Domain, stopped bool, err error) {
	d, err = t.Hypervisor.Domain(ctx, t.Domain)
	if errors.Is(err, xenctl.ErrNoDomain) {
		if t.Transient {
			return xenctl.Domain{Name: t.Domain, State: xenctl.StateShutoff, Reason: vanished}, true, nil
		}
		return d, false, f.fail(host, step, t, fmt.Errorf("domain %q not found; check the target's domain name (or mark it Transient): %w", t.Domain, err))
	}
	if err != nil {
		return d, false, f.fail(host, step, t, err)
	}
	return d, !d.State.Active(), nil
}

// Fence destroys the host's domain and waits until it reads as stopped.
func (f *Fencer) Fence(ctx context.Context, host string) (fence.Proof, error) {
	t, err := f.target(ctx, host, "destroy")
	if err != nil {
		return fence.Proof{}, err
	}
	d, stopped, err := f.state(ctx, host, "status", t)
	if err != nil {
		return fence.Proof{}, err
	}
	what := "already stopped"
	if !stopped {
		err := t.Hypervisor.Destroy(ctx, t.Domain)
		if errors.Is(err, xenctl.ErrNoDomain) && t.Transient {
			err = nil
		}
		if err != nil {
			return fence.Proof{}, f.fail(host, "destroy", t, err)
		}
		if d, err = f.wait(ctx, host, t, false); err != nil {
			return fence.Proof{}, err
		}
		what = "destroyed"
	}
	ev := fmt.Sprintf("domain %q on %s %s; it reads %s", t.Domain, t.label(), what, d.State)
	if d.Reason != "" {
		ev += fmt.Sprintf(" (%s)", d.Reason)
	}
	// A domain read back as stopped is a verified power-off, and so is a
	// transient one that vanished after we saw it and destroyed it. One
	// that was never there is not: a typo in its name looks the same.
	kind := fence.ProofVerifiedOff
	if what == "already stopped" && d.Reason == vanished {
		kind = fence.ProofUnverified
	}
	return fence.Proof{Host: host, Method: Method, Evidence: ev, Time: f.now(), Kind: kind}, nil
}

// wait polls until the domain is stopped (wantActive false) or active.
func (f *Fencer) wait(ctx context.Context, host string, t Target, wantActive bool) (xenctl.Domain, error) {
	vctx, cancel := context.WithTimeout(ctx, f.verify)
	defer cancel()
	step := "verify stopped"
	if wantActive {
		step = "verify running"
	}
	for {
		d, stopped, err := f.state(vctx, host, step, t)
		if err == nil && stopped != wantActive {
			return d, nil
		}
		if err != nil && vctx.Err() == nil {
			return d, err
		}
		timer := time.NewTimer(f.poll)
		select {
		case <-timer.C:
			continue
		case <-vctx.Done():
			timer.Stop()
		}
		if ctx.Err() != nil {
			return d, f.fail(host, step, t, ctx.Err())
		}
		return d, f.fail(host, step, t, fmt.Errorf("domain %q still reads %s after %s: %w", t.Domain, d.State, f.verify, fence.ErrNotOff))
	}
}

// Status reports on for an active domain, off otherwise.
func (f *Fencer) Status(ctx context.Context, host string) (fence.Power, error) {
	t, err := f.target(ctx, host, "status")
	if err != nil {
		return fence.PowerUnknown, err
	}
	_, stopped, err := f.state(ctx, host, "status", t)
	switch {
	case err != nil:
		return fence.PowerUnknown, err
	case stopped:
		return fence.PowerOff, nil
	}
	return fence.PowerOn, nil
}

// Unfence starts the host's domain and waits until it runs.
func (f *Fencer) Unfence(ctx context.Context, host string) error {
	t, err := f.target(ctx, host, "start")
	if err != nil {
		return err
	}
	if err := t.Hypervisor.Start(ctx, t.Domain); err != nil {
		return f.fail(host, "start", t, err)
	}
	_, err = f.wait(ctx, host, t, true)
	return err
}

var (
	_ fence.Fencer       = (*Fencer)(nil)
	_ fence.StatusReader = (*Fencer)(nil)
	_ fence.Unfencer     = (*Fencer)(nil)
)
