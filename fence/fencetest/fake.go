package fencetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/xenha/xenha/fence"
)

// ErrScripted is the error a Fail or FailTimes behaviour returns when the
// script gives none.
var ErrScripted = errors.New("fencetest: scripted failure")

type kind int

const (
	kindSucceed kind = iota
	kindFail
	kindHang
	kindFailTimes
	kindSilent
	kindOffUnknown
)

// Behavior is how the fake's fencing device for one host acts. Build one with
// Succeed, Fail, Hang, FailTimes, Silent or OffUnknown, optionally slowed with
// WithLatency.
type Behavior struct {
	kind    kind
	err     error
	n       int
	latency time.Duration
}

// Succeed powers the host off and proves it.
func Succeed() Behavior { return Behavior{kind: kindSucceed} }

// Fail answers every fence and status call with err (ErrScripted when nil),
// leaving power unchanged, like a BMC that refuses the command.
func Fail(err error) Behavior { return Behavior{kind: kindFail, err: err} }

// Hang blocks every call until its context ends, like a BMC that accepted the
// connection and never answered.
func Hang() Behavior { return Behavior{kind: kindHang} }

// FailTimes fails the first n fence calls with err (ErrScripted when nil), then
// succeeds.
func FailTimes(n int, err error) Behavior { return Behavior{kind: kindFailTimes, n: n, err: err} }

// Silent makes the device unreachable: calls fail with fence.ErrUnreachable
// and power is unchanged.
func Silent() Behavior { return Behavior{kind: kindSilent} }

// OffUnknown powers the host off but cannot confirm it: fence fails with
// fence.ErrNotOff and status reports fence.PowerUnknown. The host really is off
// (PowerOf says so), which is what makes this case dangerous to get wrong.
func OffUnknown() Behavior { return Behavior{kind: kindOffUnknown} }

// WithLatency returns b delayed by d on every call (the delay ends early, with
// the context's error, when the context ends).
func (b Behavior) WithLatency(d time.Duration) Behavior { b.latency = d; return b }

func (b Behavior) String() string {
	names := map[kind]string{kindSucceed: "succeed", kindFail: "fail", kindHang: "hang",
		kindFailTimes: "fail-times", kindSilent: "silent", kindOffUnknown: "off-unknown"}
	s := names[b.kind]
	if b.kind == kindFailTimes {
		s = fmt.Sprintf("fail %d times", b.n)
	}
	if b.latency > 0 {
		s += fmt.Sprintf(" after %s", b.latency)
	}
	return s
}

// Call is one recorded call on the fake.
type Call struct {
	Op    string // "fence", "status" or "unfence"
	Host  string
	Start time.Time
	End   time.Time
	Err   error
}

type host struct {
	power    fence.Power
	behavior Behavior
	fails    int // fence failures so far, for FailTimes
}

// Fake is a scriptable Fencer, StatusReader and Unfencer that models each
// host's power. It is safe for concurrent use; with the default Succeed
// behaviour and no latency it answers at once, so tests stay deterministic.
type Fake struct {
	method string
	now    func() time.Time

	mu      sync.Mutex
	hosts   map[string]*host
	calls   []Call
	onFence func(host string)
	proves  fence.ProofKind
}

// Option configures a Fake.
type Option func(*Fake)

// Host adds a host that is powered on, with behaviour b (Succeed when
// omitted).
func Host(name string, b ...Behavior) Option {
	return func(f *Fake) {
		h := &host{power: fence.PowerOn, behavior: Succeed()}
		if len(b) > 0 {
			h.behavior = b[0]
		}
		f.hosts[name] = h
	}
}

// Hosts adds several powered-on hosts that succeed.
func Hosts(names ...string) Option {
	return func(f *Fake) {
		for _, n := range names {
			Host(n)(f)
		}
	}
}

// Method sets the method name put in proofs and errors (default "fake").
func Method(name string) Option { return func(f *Fake) { f.method = name } }

// Proves sets the kind of proof the fake's successful fences carry (default
// fence.ProofUnverified: a fake proves only what its test makes true, so a
// test whose OnFence hook really powers the simulated host off says so with
// Proves(fence.ProofVerifiedOff)).
func Proves(kind fence.ProofKind) Option { return func(f *Fake) { f.proves = kind } }

// OnFence registers a hook called, outside the fake's lock, each time the fake
// powers a host off (also when it cannot confirm it). Tests use it to crash the
// simulated host.
func OnFence(hook func(host string)) Option { return func(f *Fake) { f.onFence = hook } }

// Clock replaces time.Now for proofs and the call log.
func Clock(now func() time.Time) Option { return func(f *Fake) { f.now = now } }

// New returns a fake with the given hosts and options.
func New(opts ...Option) *Fake {
	f := &Fake{method: "fake", now: time.Now, hosts: map[string]*host{}}
	for _, o := range opts {
		o(f)
	}
	return f
}

// AddHost adds (or resets) a powered-on host with behaviour b.
func (f *Fake) AddHost(name string, b ...Behavior) {
	f.mu.Lock()
	defer f.mu.Unlock()
	Host(name, b...)(f)
}

// Script changes a host's behaviour from now on and resets its failure count.
// It panics for an unknown host, which is a bug in the test.
func (f *Fake) Script(name string, b Behavior) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.mustHost(name)
	h.behavior, h.fails = b, 0
}

// SetOnFence replaces the hook set with OnFence.
func (f *Fake) SetOnFence(hook func(host string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onFence = hook
}

// PowerOf returns the host's real power state, whatever the device reports.
func (f *Fake) PowerOf(name string) fence.Power {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h, ok := f.hosts[name]; ok {
		return h.power
	}
	return fence.PowerUnknown
}

// SetPower sets the host's real power state, e.g. to model a host that came
// back by itself.
func (f *Fake) SetPower(name string, p fence.Power) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mustHost(name).power = p
}

// Calls returns a copy of the call log, in the order calls started.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]Call(nil), f.calls...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// FenceCalls returns how many times Fence was called for host.
func (f *Fake) FenceCalls(name string) int {
	n := 0
	for _, c := range f.Calls() {
		if c.Op == "fence" && c.Host == name {
			n++
		}
	}
	return n
}

func (f *Fake) mustHost(name string) *host {
	h, ok := f.hosts[name]
	if !ok {
		panic(fmt.Sprintf("fencetest: unknown host %q; add it with fencetest.Host", name))
	}
	return h
}

// begin looks up the host and waits out the behaviour's latency or hang.
func (f *Fake) begin(ctx context.Context, op, name string) (Behavior, func(error), error) {
	start := f.now()
	record := func(err error) {
		f.mu.Lock()
		f.calls = append(f.calls, Call{Op: op, Host: name, Start: start, End: f.now(), Err: err})
		f.mu.Unlock()
	}
	f.mu.Lock()
	h, ok := f.hosts[name]
	var b Behavior
	if ok {
		b = h.behavior
	}
	f.mu.Unlock()
	if !ok {
		err := &fence.Error{Host: name, Method: f.method, Step: op, Err: fence.ErrUnknownHost}
		record(err)
		return b, nil, err
	}
	if err := ctx.Err(); err != nil {
		err = f.errorf(name, op, err)
		record(err)
		return b, nil, err
	}
	if b.latency > 0 {
		t := time.NewTimer(b.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			err := f.errorf(name, op, ctx.Err())
			record(err)
			return b, nil, err
		}
	}
	if b.kind == kindHang {
		<-ctx.Done()
		err := f.errorf(name, op, ctx.Err())
		record(err)
		return b, nil, err
	}
	return b, record, nil
}

func (f *Fake) errorf(name, step string, err error) error {
	return &fence.Error{Host: name, Method: f.method, Step: step, Err: err}
}

func failErr(b Behavior) error {
	if b.err != nil {
		return b.err
	}
	return ErrScripted
}

// Fence implements fence.Fencer.
func (f *Fake) Fence(ctx context.Context, name string) (fence.Proof, error) {
	b, record, err := f.begin(ctx, "fence", name)
	if err != nil {
		return fence.Proof{}, err
	}
	f.mu.Lock()
	h := f.hosts[name]
	switch b.kind {
	case kindFail:
		f.mu.Unlock()
		err = f.errorf(name, "off", failErr(b))
		record(err)
		return fence.Proof{}, err
	case kindSilent:
		f.mu.Unlock()
		err = f.errorf(name, "connect", fence.ErrUnreachable)
		record(err)
		return fence.Proof{}, err
	case kindFailTimes:
		if h.fails < b.n {
			h.fails++
			n := h.fails
			f.mu.Unlock()
			err = f.errorf(name, "off", fmt.Errorf("scripted failure %d of %d: %w", n, b.n, failErr(b)))
			record(err)
			return fence.Proof{}, err
		}
	}
	wasOn := h.power != fence.PowerOff
	h.power = fence.PowerOff
	hook := f.onFence
	f.mu.Unlock()
	if wasOn && hook != nil {
		hook(name)
	}
	if b.kind == kindOffUnknown {
		err = f.errorf(name, "verify", fmt.Errorf("device reports power unknown: %w", fence.ErrNotOff))
		record(err)
		return fence.Proof{}, err
	}
	now := f.now()
	record(nil)
	return fence.Proof{Host: name, Method: f.method, Evidence: "fake device reports power off", Time: now, Kind: f.proves}, nil
}

// Status implements fence.StatusReader.
func (f *Fake) Status(ctx context.Context, name string) (fence.Power, error) {
	b, record, err := f.begin(ctx, "status", name)
	if err != nil {
		return fence.PowerUnknown, err
	}
	switch b.kind {
	case kindFail:
		err = f.errorf(name, "status", failErr(b))
	case kindSilent:
		err = f.errorf(name, "connect", fence.ErrUnreachable)
	case kindOffUnknown:
		record(nil)
		return fence.PowerUnknown, nil
	}
	if err != nil {
		record(err)
		return fence.PowerUnknown, err
	}
	record(nil)
	return f.PowerOf(name), nil
}

// Unfence implements fence.Unfencer: it powers the host on.
func (f *Fake) Unfence(ctx context.Context, name string) error {
	b, record, err := f.begin(ctx, "unfence", name)
	if err != nil {
		return err
	}
	switch b.kind {
	case kindFail:
		err = f.errorf(name, "on", failErr(b))
	case kindSilent:
		err = f.errorf(name, "connect", fence.ErrUnreachable)
	}
	if err != nil {
		record(err)
		return err
	}
	f.SetPower(name, fence.PowerOn)
	record(nil)
	return nil
}

var (
	_ fence.Fencer       = (*Fake)(nil)
	_ fence.StatusReader = (*Fake)(nil)
	_ fence.Unfencer     = (*Fake)(nil)
)
