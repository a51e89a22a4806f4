package netguardtest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/netguard"
	"github.com/xenha/xenha/netguard/netguardtest"
)

func TestFakeConformance(t *testing.T) {
	host := netguardtest.New() // the "kernel": shared across restarts
	probe := func(_ context.Context, v netguard.VIF) (bool, error) { return host.Allowed(v.MAC), nil }
	netguardtest.Run(t, func(*testing.T) netguard.Guard { return host }, netguardtest.WithProbe(probe))
}

func state(allow ...bool) netguard.State {
	var s netguard.State
	for i, a := range allow {
		s.Rules = append(s.Rules, netguard.Rule{VIF: netguard.VIF{VM: fmt.Sprint("vm", i), MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(i + 1)}}, Allow: a})
	}
	return s
}

func TestFakeFailureKeepsPreviousState(t *testing.T) {
	ctx := t.Context()
	g := netguardtest.New()
	old := state(false, true)
	if err := g.Apply(ctx, old); err != nil {
		t.Fatal(err)
	}
	boom := fmt.Errorf("%w: nft: netlink busy", netguard.ErrUnavailable)
	g.Fail(netguardtest.OpApply, boom, 2)
	for i := range 2 {
		if err := g.Apply(ctx, state(true, true)); !errors.Is(err, netguard.ErrUnavailable) {
			t.Fatalf("Apply %d with injected failure = %v, want ErrUnavailable", i, err)
		}
		if got := g.State(); !netguardtest.Equal(got, old) {
			t.Fatalf("state changed by a failed Apply: %s", netguardtest.Diff(got, old))
		}
	}
	if err := g.Apply(ctx, state(true, true)); err != nil {
		t.Fatalf("third Apply (failures used up): %v", err)
	}
	if !g.Allowed(net.HardwareAddr{2, 0, 0, 0, 0, 1}) {
		t.Error("vm0 blocked after an Apply that allowed it")
	}
	calls := g.Calls()
	if len(calls) != 4 || calls[1].Err == nil || calls[3].Err != nil {
		t.Errorf("call log = %v, want 4 applies, the 2nd and 3rd failed", calls)
	}
}

func TestFakeHangEndsWithContext(t *testing.T) {
	g := netguardtest.New()
	release := g.Hang(netguardtest.OpApply)
	defer release()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err := g.Apply(ctx, state(true))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung Apply = %v, want DeadlineExceeded", err)
	}
	if len(g.State().Rules) != 0 {
		t.Error("a hung and abandoned Apply changed the state")
	}

	done := make(chan error, 1)
	go func() { done <- g.Apply(t.Context(), state(true)) }()
	release()
	if err := <-done; err != nil {
		t.Fatalf("Apply after release: %v", err)
	}
	if !g.Allowed(net.HardwareAddr{2, 0, 0, 0, 0, 1}) {
		t.Error("released Apply did not take effect")
	}
}

func TestFakeDelayAndHeal(t *testing.T) {
	g := netguardtest.New()
	g.Delay(netguardtest.OpCurrent, time.Hour)
	g.Fail(netguardtest.OpAnnounce, errors.New("raw socket: ENETDOWN"), -1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := g.Current(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Current = %v, want Canceled", err)
	}
	g.Heal()
	if _, err := g.Current(t.Context()); err != nil {
		t.Fatalf("Current after Heal: %v", err)
	}
	if err := g.Announce(t.Context(), netguard.VIF{VM: "x", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}}); err != nil {
		t.Fatalf("Announce of an unguarded VIF after Heal: %v", err)
	}
	if n := len(g.Announced()); n != 1 {
		t.Errorf("Announced() has %d VIFs, want 1", n)
	}
}

func TestFakeAnnounceRules(t *testing.T) {
	g := netguardtest.New()
	s := state(false, true)
	if err := g.Apply(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if err := g.Announce(t.Context(), s.Rules[0].VIF); !errors.Is(err, netguard.ErrBlocked) {
		t.Errorf("Announce(blocked) = %v, want ErrBlocked", err)
	}
	if err := g.Announce(t.Context(), netguard.VIF{VM: "bad"}); !errors.Is(err, netguard.ErrInvalidState) {
		t.Errorf("Announce(no MAC) = %v, want ErrInvalidState", err)
	}
	if err := g.Announce(t.Context(), s.Rules[1].VIF); err != nil {
		t.Errorf("Announce(allowed) = %v", err)
	}
	if got := g.Announced(); len(got) != 1 || got[0].VM != "vm1" {
		t.Errorf("Announced() = %v, want only vm1", got)
	}
}

// TestFakeCallerCannotMutate checks that the fake copies what it is given
// and what it returns, as a real guard (which goes through the kernel) does.
func TestFakeCallerCannotMutate(t *testing.T) {
	g := netguardtest.New()
	s := state(true)
	if err := g.Apply(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	s.Rules[0].VIF.MAC[5] = 0x77
	got, err := g.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got.Rules[0].Allow = false
	got.Rules[0].VIF.MAC[5] = 0x78
	// Guarded, not merely allowed: an unguarded MAC is allowed too, so
	// Allowed alone would pass if the MAC in force had been rewritten.
	if allowed, guarded := g.State().Allowed(net.HardwareAddr{2, 0, 0, 0, 0, 1}); !allowed || !guarded {
		t.Errorf("mutating the caller's slices changed the state in force: %+v", g.State())
	}
}

func TestFakeConcurrent(t *testing.T) {
	g := netguardtest.New()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				_ = g.Apply(t.Context(), state(i%2 == 0, j%2 == 0))
				_, _ = g.Current(t.Context())
				g.Allowed(net.HardwareAddr{2, 0, 0, 0, 0, 1})
			}
		})
	}
	wg.Wait()
	if n := len(g.Calls()); n != 8*50*2 {
		t.Errorf("call log has %d entries, want %d", n, 8*50*2)
	}
	// Whatever won, it is one of the applied states, whole.
	if n := len(g.State().Rules); n != 2 {
		t.Errorf("state has %d rules after concurrent applies, want 2", n)
	}
}

func TestFakeHealEndsHangs(t *testing.T) {
	g := netguardtest.New()
	release := g.Hang(netguardtest.OpApply)
	done := make(chan error, 1)
	go func() { done <- g.Apply(t.Context(), state(true)) }()
	g.Heal()
	if err := <-done; err != nil {
		t.Fatalf("Apply hung then healed: %v", err)
	}
	release() // after Heal: must not panic
	release()
	if !g.Allowed(net.HardwareAddr{2, 0, 0, 0, 0, 1}) {
		t.Error("healed Apply did not take effect")
	}
}
