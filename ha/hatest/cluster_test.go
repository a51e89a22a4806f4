package hatest_test

import (
	"context"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

// TestPartitionedLeaderIsReplaced is how an embedder's test uses the
// harness (an Example cannot: hatest needs the test's testing.TB).
func TestPartitionedLeaderIsReplaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := hatest.New(t, 3)
	old, err := hc.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hc.Partition([]int{old})
	other := (old + 1) % 3
	if err := hc.Member(other).PutVM(ctx, ha.VM{Name: "web1"}); err != nil {
		t.Fatal(err)
	}
	hc.Heal()
	l, err := hc.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := hc.Member(old).State(ctx, ha.Consistent)
	if err != nil {
		t.Fatal(err)
	}
	if s.VMs["web1"] == nil {
		t.Fatalf("old leader %s does not see the majority's write after healing (leader now %s)", hc.ID(old), hc.ID(l))
	}
}
