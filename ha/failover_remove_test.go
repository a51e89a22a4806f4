package ha_test

import (
	"context"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

// cutOffH2 starts three hosts running vms under the invariant checker, cuts
// h2 (a follower with VMs) off from the other two, and returns the world,
// the majority's leader and the VMs h2 runs. removeH2 then removes it and
// waits until every one of those VMs runs elsewhere: the checker fails the
// test on any moment of two runners.
func cutOffH2(t *testing.T, ctx context.Context, vms []ha.VM) (w *hatest.World, leader int, onH2 []string) {
	t.Helper()
	w = hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	if err := w.AddVMs(ctx, vms...); err != nil {
		t.Fatal(err)
	}
	if err := w.MakeFollower(ctx, 1); err != nil {
		t.Fatal(err)
	}
	onH2 = w.VMsOn("h2")
	if len(onH2) == 0 {
		t.Fatalf("no VM on h2:\n%s", w.Describe())
	}
	w.Partition([]int{1}, []int{0, 2})
	leader, err := w.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return w, leader, onH2
}

func removeH2(t *testing.T, ctx context.Context, w *hatest.World, leader int, onH2 []string) {
	t.Helper()
	if err := w.Member(leader).Remove(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	for _, vm := range onH2 {
		if _, err := w.WaitRunning(ctx, vm, "h2"); err != nil {
			t.Fatalf("%v\n%s", err, w.Describe())
		}
	}
}

// An operator removes a host that is cut off but still runs its VMs. Its VMs
// move only after its lease has run out (it isolates itself once it sees it
// left, or its lease ends unrenewed), never while it may still run them.
func TestFailoverRemovedLiveHostIsWaitedOut(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 40*time.Second)
	w, l, onH2 := cutOffH2(t, ctx, testVMs(6))
	removeH2(t, ctx, w, l, onH2)
}

// The same with VMs the host was already told to give up: a stop-and-start
// move is committed while the host is cut off (so it never hears of it and
// keeps running them), then the host is removed. A released VM goes
// anywhere once the host it last ran on is gone, but not before that host's
// lease has run out.
func TestFailoverReleasedVMsOfRemovedHostAreWaitedOut(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 40*time.Second)
	vms := testVMs(6)
	for i := range vms {
		vms[i].Spec.Volumes = []string{"disk-" + vms[i].Name} // no live migration
	}
	w, l, onH2 := cutOffH2(t, ctx, vms)
	for _, vm := range onH2 {
		if err := w.Member(l).Migrate(ctx, vm, w.ID(l)); err != nil {
			t.Fatal(err)
		}
	}
	removeH2(t, ctx, w, l, onH2)
}
