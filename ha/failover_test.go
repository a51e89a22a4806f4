package ha_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/netguard"
	"github.com/xenha/xenha/xenctl/xenctltest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

func testVMs(n int) []ha.VM {
	var out []ha.VM
	for i := range n {
		out = append(out, hatest.VMSpec(fmt.Sprintf("vm%02d", i), 512, 1, i))
	}
	return out
}

// A host that dies has its VMs restarted on the others, and only after a
// fence record for it was committed.
func TestFailoverHostCrash(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vms := testVMs(6)
	for i := range vms {
		vms[i].Spec.Volumes = []string{"disk-" + vms[i].Name}
	}
	if err := w.AddVMs(ctx, vms...); err != nil {
		t.Fatal(err)
	}
	l, err := w.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := w.ID((l + 1) % 3)
	onVictim := w.VMsOn(victim)
	if len(onVictim) == 0 {
		t.Fatalf("no VM on %s to fail over:\n%s", victim, w.Describe())
	}
	w.Kill(w.Index(victim))
	for _, vm := range onVictim {
		host, err := w.WaitRunning(ctx, vm, victim)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Store.Writers("disk-" + vm); !slices.Equal(got, []string{host}) {
			t.Errorf("disk of %s is written by %v, want only %s", vm, got, host)
		}
		// Its network is open on the new host only, and announced there.
		mac := w.State().VMs[vm].Spec.MACs[0]
		g := w.Host(host).Guard
		if err := waitFor(ctx, func() bool {
			for _, vif := range g.Announced() {
				if vif.VM == vm && vif.MAC.String() == mac {
					return true
				}
			}
			return false
		}); err != nil {
			t.Errorf("no gratuitous ARP for %s on %s: %v", vm, host, err)
		}
	}
	s := w.State()
	if len(s.Fences) == 0 || s.Fences[0].Host != victim {
		t.Fatalf("fence records %+v, want one for %s", s.Fences, victim)
	}
	var inc *ha.Incident
	for _, i := range s.Incidents {
		if i.Host == victim {
			inc = i
		}
	}
	if inc == nil {
		t.Fatalf("no incident for %s", victim)
	}
	if err := w.Wait(ctx, "incident closed", func(s *ha.State) bool {
		for _, i := range s.Incidents {
			if i.Host == victim && !i.Closed.IsZero() {
				inc = i
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("timeline:\n%s", inc.Timeline(true))
	// The victim comes back, registers at its new epoch and gets work again.
	if err := w.Revive(w.Index(victim)); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitHosts(ctx); err != nil {
		t.Fatal(err)
	}
}

// A fence that always fails leads to no recovery: the VMs stay where they
// were (dead), every round is recorded, and only an operator's
// acknowledgement lets them move.
func TestFailoverFenceFailsNoRecovery(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.FenceBehavior(fencetest.Fail(fence.ErrUnreachable).WithLatency(20*time.Millisecond)))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var evMu sync.Mutex
	seen := map[ha.EventKind]int{}
	for i := range 3 {
		ch := w.Member(i).Subscribe(ctx)
		go func() {
			for e := range ch {
				evMu.Lock()
				seen[e.Kind]++
				evMu.Unlock()
			}
		}()
	}
	if err := w.AddVMs(ctx, testVMs(4)...); err != nil {
		t.Fatal(err)
	}
	l, _ := w.WaitLeader(ctx)
	victim := w.ID((l + 1) % 3)
	onVictim := w.VMsOn(victim)
	if len(onVictim) == 0 {
		t.Fatalf("no VM on %s:\n%s", victim, w.Describe())
	}
	// The host hangs: it stops answering but is not powered off, and its
	// BMC does not answer either.
	w.Crash(w.Index(victim))
	if err := w.Wait(ctx, "three failed fence rounds", func(s *ha.State) bool {
		for _, inc := range s.Incidents {
			if inc.Host == victim && len(inc.Attempts) >= 3 {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	s := w.State()
	if len(s.Fences) != 0 {
		t.Fatalf("fence records %+v with a fencer that always fails", s.Fences)
	}
	evMu.Lock()
	for _, k := range []ha.EventKind{ha.EventHostSuspect, ha.EventFenceAttempt, ha.EventFenceFailed} {
		if seen[k] == 0 {
			t.Errorf("no %s event; saw %v", k, seen)
		}
	}
	evMu.Unlock()
	for _, vm := range onVictim {
		if v := s.VMs[vm]; v.Host != victim {
			t.Fatalf("VM %s moved to %q without a fence of %s", vm, v.Host, victim)
		}
	}
	if h := s.Hosts[victim]; h.State != ha.HostSuspect {
		t.Fatalf("%s is %s, want suspect", victim, h.State)
	}
	// An operator may not acknowledge a live host.
	other := w.ID(l)
	if err := w.Any().AckFence(ctx, other, "alice"); !errors.Is(err, ha.ErrHostAlive) {
		t.Fatalf("AckFence of live %s: %v, want ErrHostAlive", other, err)
	}
	// The operator pulls the plug and says so.
	w.Kill(w.Index(victim))
	if err := w.Any().AckFence(ctx, victim, "alice"); err != nil {
		t.Fatal(err)
	}
	for _, vm := range onVictim {
		if _, err := w.WaitRunning(ctx, vm, victim); err != nil {
			t.Fatal(err)
		}
	}
	s = w.State()
	if len(s.Fences) != 1 || !s.Fences[0].Manual || s.Fences[0].Operator != "alice" {
		t.Fatalf("fence records %+v, want one manual record by alice", s.Fences)
	}
}

// A partitioned minority host isolates its VMs before its lease ends (by
// pausing them, the default, or destroying them); the majority restarts
// them only after the lease and the fence.
func TestFailoverPartitionIsolation(t *testing.T) {
	t.Parallel()
	for _, resp := range []ha.IsolationAction{ha.IsolatePause, ha.IsolateDestroy} {
		t.Run(string(resp), func(t *testing.T) { testPartitionIsolation(t, resp) })
	}
}

func testPartitionIsolation(t *testing.T, resp ha.IsolationAction) {
	w := hatest.NewWorld(t, 3, hatest.Configure(func(i int, cfg *ha.Config) { cfg.IsolationResponse.Action = resp }))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(6)...); err != nil {
		t.Fatal(err)
	}
	l, _ := w.WaitLeader(ctx)
	vi := (l + 1) % 3
	victim := w.ID(vi)
	onVictim := w.VMsOn(victim)
	// The fencing device cannot reach the victim at first: isolation alone
	// must keep the VMs from running twice.
	w.Fencer.Script(victim, fencetest.FailTimes(4, fence.ErrUnreachable))
	var rest []int
	for i := range 3 {
		if i != vi {
			rest = append(rest, i)
		}
	}
	w.Partition([]int{vi}, rest)
	hv := w.Host(victim).Hyper
	if err := waitFor(ctx, func() bool {
		for _, vm := range onVictim {
			if slices.Contains(w.RunningOn(vm), victim) {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("the isolated host still runs its VMs: %v\n%s", err, w.Describe())
	}
	if w.Killed(victim) {
		t.Fatal("the victim was powered off before it isolated itself: the test proves nothing")
	}
	if g := w.Host(victim).Guard.State(); g.Mode != netguard.BlockAll {
		t.Errorf("isolated host's guard is %s, want block-all", g.Mode)
	}
	method := map[ha.IsolationAction]xenctltest.Method{ha.IsolatePause: xenctltest.MethodSuspend, ha.IsolateDestroy: xenctltest.MethodDestroy}[resp]
	if n := hv.CallCount(method); n < len(onVictim) {
		t.Errorf("the isolated host made %d %s calls, want %d (isolation response %s)", n, method, len(onVictim), resp)
	}
	for _, vm := range onVictim {
		if _, err := w.WaitRunning(ctx, vm, victim); err != nil {
			t.Fatal(err)
		}
	}
	s := w.State()
	if len(s.Fences) != 1 || s.Fences[0].Host != victim {
		t.Fatalf("fence records %+v, want one for %s", s.Fences, victim)
	}
	w.Heal()
}

func waitFor(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
