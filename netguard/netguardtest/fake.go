package netguardtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xenha/xenha/netguard"
)

// Op names a Guard operation, for the call log and for fault injection.
type Op string

// Operations of the fake.
const (
	OpApply    Op = "apply"
	OpCurrent  Op = "current"
	OpAnnounce Op = "announce"
)

// Call is one recorded call to the fake.
type Call struct {
	Op Op
	// State is the requested state (OpApply) or the state returned
	// (OpCurrent), deep-copied and normalized.
	State netguard.State
	// VIF is the announced interface (OpAnnounce).
	VIF netguard.VIF
	// Err is what the call returned.
	Err error
}

func (c Call) String() string {
	switch c.Op {
	case OpAnnounce:
		return fmt.Sprintf("announce %s %s -> %v", c.VIF.VM, c.VIF.MAC, c.Err)
	case OpApply:
		return fmt.Sprintf("apply %s (%d rules) -> %v", c.State.Mode, len(c.State.Rules), c.Err)
	}
	return fmt.Sprintf("%s -> %v", c.Op, c.Err)
}

// fault is what the next calls of one Op do instead of succeeding.
type fault struct {
	err       error
	remaining int // calls left to fail; negative: all
	delay     time.Duration
	hang      chan struct{} // closed by release
	release   func()        // closes hang, once
}

// Guard is an in-memory [netguard.Guard] and [netguard.Announcer]. The zero
// value is not usable; call [New]. It is safe for concurrent use; calls are
// serialized, as a real packet filter's transactions are.
type Guard struct {
	mu     sync.Mutex
	state  netguard.State
	calls  []Call
	faults map[Op]*fault
	// applyMu serializes whole Apply calls (including injected delays), so
	// that two concurrent Applies cannot interleave their outcome.
	applyMu sync.Mutex
}

// Option configures a fake Guard.
type Option func(*Guard)

// WithState starts the fake with s already in force (as a real guard finds
// the table its previous process left in the kernel). s must be valid.
func WithState(s netguard.State) Option {
	return func(g *Guard) { g.state = Clone(s).Normalize() }
}

// New returns a fake guard with an empty state in force: nothing guarded.
func New(opts ...Option) *Guard {
	g := &Guard{faults: make(map[Op]*fault)}
	for _, o := range opts {
		o(g)
	}
	return g
}

// Apply puts s in force, as [netguard.Guard] specifies: an invalid state, a
// cancelled context or an injected fault leaves the previous state in force.
func (g *Guard) Apply(ctx context.Context, s netguard.State) error {
	g.applyMu.Lock()
	defer g.applyMu.Unlock()
	req := Clone(s).Normalize()
	err := g.apply(ctx, req)
	g.record(Call{Op: OpApply, State: req, Err: err})
	return err
}

func (g *Guard) apply(ctx context.Context, s netguard.State) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("netguard fake: apply not started: %w", err)
	}
	if err := s.Validate(); err != nil {
		return err
	}
	if err := g.injected(ctx, OpApply); err != nil {
		return err
	}
	g.mu.Lock()
	g.state = s
	g.mu.Unlock()
	return nil
}

// Current returns a copy of the state in force.
func (g *Guard) Current(ctx context.Context) (netguard.State, error) {
	var s netguard.State
	err := ctx.Err()
	if err == nil {
		err = g.injected(ctx, OpCurrent)
	}
	if err == nil {
		s = g.State()
	}
	g.record(Call{Op: OpCurrent, State: s, Err: err})
	return s, err
}

// Announce records the announcement. Like the nftables guard it refuses a
// VIF whose traffic is blocked (the frames would be dropped), with
// [netguard.ErrBlocked].
func (g *Guard) Announce(ctx context.Context, vif netguard.VIF) error {
	vif = cloneVIF(vif)
	err := ctx.Err()
	if err == nil {
		err = g.injected(ctx, OpAnnounce)
	}
	if err == nil && len(vif.MAC) != 6 {
		err = fmt.Errorf("%w: announce for VM %q: MAC %q, want 6 bytes", netguard.ErrInvalidState, vif.VM, vif.MAC)
	}
	if err == nil && !g.Allowed(vif.MAC) {
		err = fmt.Errorf("%w: announce for VM %q (MAC %s): unblock it first", netguard.ErrBlocked, vif.VM, vif.MAC)
	}
	g.record(Call{Op: OpAnnounce, VIF: vif, Err: err})
	return err
}

// injected runs the fault set for op, if any: a delay or hang first (ended
// early by ctx), then the error.
func (g *Guard) injected(ctx context.Context, op Op) error {
	g.mu.Lock()
	f := g.faults[op]
	var (
		err   error
		delay time.Duration
		hang  chan struct{}
	)
	if f != nil {
		delay, hang = f.delay, f.hang
		if f.err != nil && f.remaining != 0 {
			err = f.err
			if f.remaining > 0 {
				f.remaining--
			}
		}
	}
	g.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("netguard fake: %s interrupted during injected delay: %w", op, ctx.Err())
		}
	}
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return fmt.Errorf("netguard fake: %s interrupted while hanging: %w", op, ctx.Err())
		}
	}
	return err
}

func (g *Guard) fault(op Op) *fault {
	f := g.faults[op]
	if f == nil {
		f = &fault{}
		g.faults[op] = f
	}
	return f
}

// Fail makes the next n calls of op return err (n < 0: every call until
// [Guard.Heal]). Pass an error wrapping [netguard.ErrUnavailable] to play a
// packet filter that cannot be programmed.
func (g *Guard) Fail(op Op, err error, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.fault(op)
	f.err, f.remaining = err, n
}

// Delay makes every call of op wait d (or until its context ends) first.
func (g *Guard) Delay(op Op, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fault(op).delay = d
}

// Hang makes calls of op block until their context ends or release is
// called. release may be called more than once.
func (g *Guard) Hang(op Op) (release func()) {
	ch := make(chan struct{})
	var once sync.Once
	closeCh := func() { once.Do(func() { close(ch) }) }
	g.mu.Lock()
	f := g.fault(op)
	if f.release != nil {
		f.release() // a previous hang of op ends here
	}
	f.hang, f.release = ch, closeCh
	g.mu.Unlock()
	return func() {
		closeCh()
		g.mu.Lock()
		if f := g.faults[op]; f != nil && f.hang == ch {
			f.hang, f.release = nil, nil
		}
		g.mu.Unlock()
	}
}

// Heal removes every injected failure, delay and hang (hung calls return).
func (g *Guard) Heal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, f := range g.faults {
		if f.release != nil {
			f.release()
		}
	}
	clear(g.faults)
}

// State returns a copy of the state in force.
func (g *Guard) State() netguard.State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Clone(g.state)
}

// Allowed reports whether traffic of mac passes under the state in force.
func (g *Guard) Allowed(mac net.HardwareAddr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	ok, _ := g.state.Allowed(mac)
	return ok
}

// Calls returns the call log, oldest first.
func (g *Guard) Calls() []Call {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// Announced returns the VIFs successfully announced, oldest first.
func (g *Guard) Announced() []netguard.VIF {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []netguard.VIF
	for _, c := range g.calls {
		if c.Op == OpAnnounce && c.Err == nil {
			out = append(out, c.VIF)
		}
	}
	return out
}

func (g *Guard) record(c Call) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, c)
}

// Clone returns a deep copy of s, sharing no slices with it.
func Clone(s netguard.State) netguard.State {
	out := netguard.State{Mode: s.Mode}
	if s.Rules != nil {
		out.Rules = make([]netguard.Rule, len(s.Rules))
		for i, r := range s.Rules {
			out.Rules[i] = netguard.Rule{VIF: cloneVIF(r.VIF), Allow: r.Allow}
		}
	}
	return out
}

func cloneVIF(v netguard.VIF) netguard.VIF {
	v.MAC = slices.Clone(v.MAC)
	v.Addrs = slices.Clone(v.Addrs)
	return v
}

// Equal reports whether a and b put the same state in force and describe it
// the same way: same mode, and the same rules (VM, MAC, port, addresses,
// verdict) whatever their order and the order of addresses.
func Equal(a, b netguard.State) bool { return Diff(a, b) == "" }

// Diff describes the first difference between a and b, or returns "".
func Diff(a, b netguard.State) string {
	if a.Mode != b.Mode {
		return fmt.Sprintf("mode %s != %s", a.Mode, b.Mode)
	}
	if len(a.Rules) != len(b.Rules) {
		return fmt.Sprintf("%d rules != %d rules", len(a.Rules), len(b.Rules))
	}
	na, nb := a.Normalize(), b.Normalize()
	for i := range na.Rules {
		ra, rb := na.Rules[i], nb.Rules[i]
		switch {
		case ra.VIF.MAC.String() != rb.VIF.MAC.String():
			return fmt.Sprintf("rule %d: MAC %s != %s", i, ra.VIF.MAC, rb.VIF.MAC)
		case ra.Allow != rb.Allow:
			return fmt.Sprintf("MAC %s: allow %v != %v", ra.VIF.MAC, ra.Allow, rb.Allow)
		case ra.VIF.VM != rb.VIF.VM:
			return fmt.Sprintf("MAC %s: VM %q != %q", ra.VIF.MAC, ra.VIF.VM, rb.VIF.VM)
		case ra.VIF.Port != rb.VIF.Port:
			return fmt.Sprintf("MAC %s: port %q != %q", ra.VIF.MAC, ra.VIF.Port, rb.VIF.Port)
		case !slices.Equal(sortedAddrs(ra.VIF.Addrs), sortedAddrs(rb.VIF.Addrs)):
			return fmt.Sprintf("MAC %s: addrs %v != %v", ra.VIF.MAC, ra.VIF.Addrs, rb.VIF.Addrs)
		}
	}
	return ""
}

func sortedAddrs(a []netip.Addr) []netip.Addr {
	a = slices.Clone(a)
	slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
	return a
}
