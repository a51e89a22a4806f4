package ha_test

import (
	"context"
	"testing"
	"time"

	"github.com/xenha/xenha/ha/hatest"
)

// An operator removes a host that is cut off but still runs its VMs. Its VMs
// move only after its lease has run out (it isolates itself once it sees it
// left, or its lease ends unrenewed), never while it may still run them: the
// invariant checker fails the test on any moment of two runners.
func TestFailoverRemovedLiveHostIsWaitedOut(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(6)...); err != nil {
		t.Fatal(err)
	}
	if err := w.MakeFollower(ctx, 1); err != nil {
		t.Fatal(err)
	}
	onH2 := w.VMsOn("h2")
	if len(onH2) == 0 {
		t.Fatalf("no VM on h2:\n%s", w.Describe())
	}
	w.Partition([]int{1}, []int{0, 2})
	l, err := w.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Member(l).Remove(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	for _, vm := range onH2 {
		if _, err := w.WaitRunning(ctx, vm, "h2"); err != nil {
			t.Fatalf("%v\n%s", err, w.Describe())
		}
	}
}
