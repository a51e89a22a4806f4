package ha_test

import (
	"context"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// When the whole cluster loses quorum for a moment (every host cut off from
// every other), every host pauses its VMs before its lease ends; when quorum
// returns with the same epochs, the VMs are resumed where they were, and
// nothing moves.
func TestFailoverQuorumLossPausesThenResumes(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.FenceBehavior(fencetest.Succeed().WithLatency(20*time.Second)))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	vms := testVMs(4)
	if err := w.AddVMs(ctx, vms...); err != nil {
		t.Fatal(err)
	}
	before := w.State()
	w.Partition([]int{0}, []int{1}, []int{2})
	waitNoneExecuting(t, ctx, w, vms)
	for _, vm := range vms {
		if on := w.Hyper.Active(vm.Name); len(on) != 1 || on[0] != before.VMs[vm.Name].Host {
			t.Fatalf("VM %s is active on %v, want paused on %s", vm.Name, on, before.VMs[vm.Name].Host)
		}
	}
	w.Heal()
	for _, vm := range vms {
		host, err := w.WaitRunning(ctx, vm.Name, "")
		if err != nil {
			t.Fatal(err)
		}
		if want := before.VMs[vm.Name].Host; host != want {
			t.Errorf("VM %s resumed on %s, want %s", vm.Name, host, want)
		}
	}
	resumes := 0
	for _, id := range []string{"h1", "h2", "h3"} {
		resumes += w.Host(id).Hyper.CallCount(xenctltest.MethodResume)
	}
	if resumes < len(vms) {
		t.Errorf("%d resumes, want %d", resumes, len(vms))
	}
	if s := w.State(); len(s.Fences) != 0 {
		t.Errorf("fences %+v after a brief loss of quorum", s.Fences)
	}
}

// One host is dead and fenced; the other two are then cut apart, so no
// side has quorum and both pause their VMs; when they meet again the VMs
// resume where they were.
func TestFailoverQuorumLossWithDeadHost(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	vms := testVMs(6)
	if err := w.AddVMs(ctx, vms...); err != nil {
		t.Fatal(err)
	}
	l, _ := w.WaitLeader(ctx)
	dead := (l + 1) % 3
	w.Kill(dead)
	for _, vm := range vms {
		if _, err := w.WaitRunning(ctx, vm.Name, w.ID(dead)); err != nil {
			t.Fatal(err)
		}
	}
	var alive []int
	for i := range 3 {
		if i != dead {
			alive = append(alive, i)
		}
	}
	w.Partition([]int{alive[0]}, []int{alive[1]})
	waitNoneExecuting(t, ctx, w, vms)
	w.Heal()
	for _, vm := range vms {
		if _, err := w.WaitRunning(ctx, vm.Name, w.ID(dead)); err != nil {
			t.Fatal(err)
		}
	}
}

// A member that restarts while its VMs are paused by isolation (its daemon
// crashed, the host stayed up) resumes them once quorum returns.
func TestFailoverPausedVMsSurviveMemberRestart(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.FenceBehavior(fencetest.Succeed().WithLatency(20*time.Second)))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	vms := testVMs(6)
	if err := w.AddVMs(ctx, vms...); err != nil {
		t.Fatal(err)
	}
	onH2 := w.VMsOn("h2")
	w.Partition([]int{0}, []int{1}, []int{2})
	waitNoneExecuting(t, ctx, w, vms)
	w.Crash(1) // the daemon dies; the host and its paused VMs stay
	if err := w.Restart(1); err != nil {
		t.Fatal(err)
	}
	w.Heal()
	for _, vm := range onH2 {
		if host, err := w.WaitRunning(ctx, vm, ""); err != nil || host != "h2" {
			t.Fatalf("%s on %q (%v), want resumed on h2", vm, host, err)
		}
	}
}

// waitNoneExecuting waits until no host executes any of vms: every host has
// isolated itself after losing quorum.
func waitNoneExecuting(t *testing.T, ctx context.Context, w *hatest.World, vms []ha.VM) {
	t.Helper()
	if err := waitFor(ctx, func() bool {
		for _, vm := range vms {
			if len(w.RunningOn(vm.Name)) != 0 {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("VMs still execute without quorum: %v", err)
	}
}
