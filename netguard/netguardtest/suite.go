package netguardtest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/netguard"
)

// Probe reports whether traffic of vif passes right now, by whatever means
// the implementation under test has: the nftables suite sends real packets
// between network namespaces. A Probe lets [Run] prove the verdicts with
// traffic, not only with the guard's own account of them.
type Probe func(ctx context.Context, vif netguard.VIF) (passes bool, err error)

// SuiteOption configures [Run].
type SuiteOption func(*suite)

// WithVIFs makes the suite use these interfaces (at least three; a [Probe]
// must be able to test each). By default it invents three with
// locally-administered MACs.
func WithVIFs(vifs ...netguard.VIF) SuiteOption {
	return func(s *suite) { s.vifs = vifs }
}

// WithProbe makes the suite check every state it applies with p.
func WithProbe(p Probe) SuiteOption {
	return func(s *suite) { s.probe = p }
}

type suite struct {
	vifs     []netguard.VIF
	probe    Probe
	newGuard func(t *testing.T) netguard.Guard
}

// DefaultVIFs are the interfaces the suite uses unless told otherwise.
func DefaultVIFs() []netguard.VIF {
	return []netguard.VIF{
		{VM: "web-1", MAC: net.HardwareAddr{0x02, 0x58, 0x48, 0x00, 0x00, 0x01}, Port: "vif1.0",
			Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("fd00:198:18::11")}},
		{VM: "db-1", MAC: net.HardwareAddr{0x02, 0x58, 0x48, 0x00, 0x00, 0x02}, Port: "vif2.0",
			Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.12")}},
		{VM: "gw-1", MAC: net.HardwareAddr{0x02, 0x58, 0x48, 0x00, 0x00, 0x03}, Port: "vif3.0"},
	}
}

// Run is the conformance suite for [netguard.Guard] implementations.
// newGuard returns a guard for the host under test. The suite calls it more
// than once to play a restarted daemon, and expects the state in force to
// survive that (it lives in the kernel, not in the process), so each subtest
// may start with the previous subtest's state in force. Guards that also implement [netguard.Announcer]
// are checked to refuse announcing a blocked VIF.
func Run(t *testing.T, newGuard func(t *testing.T) netguard.Guard, opts ...SuiteOption) {
	s := &suite{vifs: DefaultVIFs(), newGuard: newGuard}
	for _, o := range opts {
		o(s)
	}
	if len(s.vifs) < 3 {
		t.Fatalf("netguardtest.Run needs at least 3 VIFs, got %d", len(s.vifs))
	}
	t.Run("RoundTrip", s.testRoundTrip)
	t.Run("Idempotent", s.testIdempotent)
	t.Run("Replace", s.testReplace)
	t.Run("BlockAll", s.testBlockAll)
	t.Run("AllowAll", s.testAllowAll)
	t.Run("Empty", s.testEmpty)
	t.Run("InvalidState", s.testInvalid)
	t.Run("Canceled", s.testCanceled)
	t.Run("AnnounceBlocked", s.testAnnounceBlocked)
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mixed is the baseline: first VIF allowed, the others blocked.
func (s *suite) mixed() netguard.State {
	st := netguard.State{}
	for i, v := range s.vifs[:3] {
		st.Rules = append(st.Rules, netguard.Rule{VIF: cloneVIF(v), Allow: i == 0})
	}
	return st
}

// applyAndCheck applies want, then checks Current and, with a probe, the
// traffic of every suite VIF.
func (s *suite) applyAndCheck(t *testing.T, g netguard.Guard, want netguard.State) {
	t.Helper()
	ctx := s.ctx(t)
	if err := g.Apply(ctx, want); err != nil {
		t.Fatalf("Apply(%s, %d rules): %v", want.Mode, len(want.Rules), err)
	}
	s.check(t, g, want)
}

// check verifies that want is in force.
func (s *suite) check(t *testing.T, g netguard.Guard, want netguard.State) {
	t.Helper()
	ctx := s.ctx(t)
	got, err := g.Current(ctx)
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	if d := Diff(got, want); d != "" {
		t.Fatalf("Current differs from the state applied: %s\n got: %+v\nwant: %+v", d, got, want)
	}
	if s.probe == nil {
		return
	}
	// Probes run concurrently: a probe of blocked traffic waits for a
	// timeout, and they do not interfere (one VIF each).
	type result struct {
		pass bool
		err  error
	}
	results := make([]result, len(s.vifs))
	var wg sync.WaitGroup
	for i, v := range s.vifs {
		wg.Go(func() {
			pass, err := s.probe(ctx, v)
			results[i] = result{pass, err}
		})
	}
	wg.Wait()
	for i, v := range s.vifs {
		wantPass, _ := want.Allowed(v.MAC)
		if err := results[i].err; err != nil {
			t.Fatalf("probe VM %q (%s): %v", v.VM, v.MAC, err)
		}
		if results[i].pass != wantPass {
			t.Errorf("traffic of VM %q (%s) passes=%v under mode %s, want %v", v.VM, v.MAC, results[i].pass, want.Mode, wantPass)
		}
	}
}

func (s *suite) testRoundTrip(t *testing.T) {
	g := s.newGuard(t)
	s.applyAndCheck(t, g, s.mixed())
	// Flip every verdict: the state is replaced, not merged.
	flipped := s.mixed()
	for i := range flipped.Rules {
		flipped.Rules[i].Allow = !flipped.Rules[i].Allow
	}
	s.applyAndCheck(t, g, flipped)
}

func (s *suite) testIdempotent(t *testing.T) {
	g := s.newGuard(t)
	for range 3 {
		s.applyAndCheck(t, g, s.mixed())
	}
	// A new guard (a restarted daemon) finds the state still in force.
	s.check(t, s.newGuard(t), s.mixed())
}

func (s *suite) testReplace(t *testing.T) {
	g := s.newGuard(t)
	s.applyAndCheck(t, g, s.mixed())
	// Only the second VIF remains guarded (blocked); the others are no
	// longer guarded, so their traffic passes.
	only := netguard.State{Rules: []netguard.Rule{{VIF: cloneVIF(s.vifs[1])}}}
	s.applyAndCheck(t, g, only)
	got, err := g.Current(s.ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, guarded := got.Allowed(s.vifs[0].MAC); guarded {
		t.Errorf("MAC %s still guarded after a state without it was applied", s.vifs[0].MAC)
	}
}

func (s *suite) testBlockAll(t *testing.T) {
	g := s.newGuard(t)
	st := s.mixed()
	for i := range st.Rules {
		st.Rules[i].Allow = true
	}
	st.Mode = netguard.BlockAll
	s.applyAndCheck(t, g, st)
	st.Mode = netguard.PerVIF
	s.applyAndCheck(t, g, st)
}

func (s *suite) testAllowAll(t *testing.T) {
	g := s.newGuard(t)
	st := s.mixed()
	for i := range st.Rules {
		st.Rules[i].Allow = false
	}
	st.Mode = netguard.AllowAll
	s.applyAndCheck(t, g, st)
	st.Mode = netguard.BlockAll
	s.applyAndCheck(t, g, st)
}

func (s *suite) testEmpty(t *testing.T) {
	g := s.newGuard(t)
	s.applyAndCheck(t, g, s.mixed())
	s.applyAndCheck(t, g, netguard.State{})
	s.applyAndCheck(t, g, netguard.State{Mode: netguard.BlockAll})
}

func (s *suite) testInvalid(t *testing.T) {
	g := s.newGuard(t)
	good := s.mixed()
	s.applyAndCheck(t, g, good)

	dup := s.mixed()
	dup.Rules = append(dup.Rules, netguard.Rule{VIF: netguard.VIF{VM: "twin", MAC: s.vifs[1].MAC}, Allow: true})
	short := s.mixed()
	short.Rules[1].VIF.MAC = net.HardwareAddr{1, 2, 3}
	none := s.mixed()
	none.Rules[2].VIF.MAC = nil
	mode := s.mixed()
	mode.Mode = netguard.Mode(42)
	for name, bad := range map[string]netguard.State{"duplicate MAC": dup, "short MAC": short, "no MAC": none, "unknown mode": mode} {
		err := g.Apply(s.ctx(t), bad)
		if !errors.Is(err, netguard.ErrInvalidState) {
			t.Errorf("Apply(%s) = %v, want ErrInvalidState", name, err)
		}
		s.check(t, g, good)
	}
}

func (s *suite) testCanceled(t *testing.T) {
	g := s.newGuard(t)
	good := s.mixed()
	s.applyAndCheck(t, g, good)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	open := s.mixed()
	open.Mode = netguard.AllowAll
	if err := g.Apply(ctx, open); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context = %v, want an error wrapping context.Canceled", err)
	}
	s.check(t, g, good)
}

func (s *suite) testAnnounceBlocked(t *testing.T) {
	g := s.newGuard(t)
	a, ok := g.(netguard.Announcer)
	if !ok {
		t.Skip("guard does not implement netguard.Announcer")
	}
	s.applyAndCheck(t, g, s.mixed())
	blocked := s.vifs[1]
	err := a.Announce(s.ctx(t), blocked)
	if !errors.Is(err, netguard.ErrBlocked) {
		t.Errorf("Announce(blocked VM %q) = %v, want ErrBlocked", blocked.VM, err)
	}
}
