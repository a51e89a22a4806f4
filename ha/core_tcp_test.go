package ha_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
)

// These tests run over loopback TCP with mutual TLS and bbolt logs, as in
// production.

func TestTCPClustersFormAndReplicate(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-members", n), func(t *testing.T) {
			hc := tcpCluster(t, n)
			ctx := ctxT(t, 60*time.Second)
			if _, err := hc.WaitLeader(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if err := putValue(ctx, hc.Member(i), fmt.Sprintf("vm%d", i), uint64(i+1)); err != nil {
					t.Fatalf("write via %s: %v", hc.ID(i), err)
				}
			}
			for i := range n {
				s, err := hc.Member(i).State(ctx, ha.Consistent)
				if err != nil {
					t.Fatalf("read on %s: %v", hc.ID(i), err)
				}
				if len(s.VMs) != n || len(s.Hosts) != n {
					t.Fatalf("%s sees %d VMs and %d hosts, want %d of each", hc.ID(i), len(s.VMs), len(s.Hosts), n)
				}
			}
			ms, err := hc.Member(0).Members()
			if err != nil {
				t.Fatal(err)
			}
			voters := 0
			for _, m := range ms {
				if m.Voter {
					voters++
				}
			}
			if len(ms) != n || voters != n {
				t.Fatalf("members %+v: want %d voters", ms, n)
			}
		})
	}
}

func TestTCPLeaderCrashLosesNoAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	hc := tcpCluster(t, 3)
	ctx := ctxT(t, 90*time.Second)
	leader, err := hc.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	acked := map[string]uint64{}
	for k := range 20 {
		key := fmt.Sprintf("vm%d", k)
		// Half through the leader, half forwarded by a follower.
		via := hc.Member(leader)
		if k%2 == 1 {
			via = hc.Member(follower)
		}
		if err := putValue(ctx, via, key, uint64(k+1)); err != nil {
			t.Fatalf("write %s: %v", key, err)
		}
		acked[key] = uint64(k + 1)
	}
	subs := map[int]<-chan ha.Event{}
	for i := range 3 {
		if i != leader {
			subs[i] = hc.Member(i).Subscribe(ctx)
		}
	}
	hc.Crash(leader)
	newLeader, err := hc.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newLeader == leader {
		t.Fatalf("crashed member %s still leads", hc.ID(leader))
	}
	for e := range subs[newLeader] {
		if e.Kind == ha.EventLeaderElected {
			if e.Host != hc.ID(newLeader) {
				t.Fatalf("leader event names %s, want %s", e.Host, hc.ID(newLeader))
			}
			break
		}
	}
	for _, i := range hc.Running() {
		for key, want := range acked {
			got, ok, err := getValue(ctx, hc.Member(i), key, ha.Consistent)
			if err != nil || !ok || got != want {
				t.Fatalf("after the leader crashed, %s reads %s = %d (present %v, err %v); want %d", hc.ID(i), key, got, ok, err, want)
			}
		}
	}
	if err := putValue(ctx, hc.Member(follower), "after", 7); err != nil {
		t.Fatalf("write after failover: %v", err)
	}

	// The crashed member restarts on its bbolt log and catches up, without
	// bootstrapping or joining again.
	if err := hc.Restart(leader); err != nil {
		t.Fatal(err)
	}
	back := hc.Member(leader)
	if back.Fresh() {
		t.Fatal("restarted member reports no state")
	}
	if err := back.Join(ctx, hc.Member(follower).Addr()); err == nil {
		t.Fatal("restarted member was allowed to join again")
	}
	waitValue(t, ctx, back, "after", 7)
	for key, want := range acked {
		waitValue(t, ctx, back, key, want)
	}
}

func TestTCPSnapshotRestoreOnRestart(t *testing.T) {
	t.Parallel()
	hc := tcpCluster(t, 3)
	ctx := ctxT(t, 90*time.Second)
	if _, err := hc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for k := range 10 {
		if err := putValue(ctx, hc.Member(0), fmt.Sprintf("vm%d", k), uint64(k)); err != nil {
			t.Fatal(err)
		}
	}
	before, err := hc.Member(2).State(ctx, ha.Consistent)
	if err != nil {
		t.Fatal(err)
	}
	if err := hc.Member(2).Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	hc.Crash(2)
	if err := hc.Restart(2); err != nil {
		t.Fatal(err)
	}
	// Right after the restart the member holds what it snapshotted (lease
	// renewals go on in the background, so compare the catalogue, not the
	// whole state; the golden test checks exact round trips).
	after, err := hc.Member(2).State(ctx, ha.Stale)
	if err != nil {
		t.Fatal(err)
	}
	if after.Index < before.Index {
		t.Fatalf("restarted at index %d, before the snapshot's %d", after.Index, before.Index)
	}
	before.Hosts, after.Hosts, before.Requests, after.Requests = nil, nil, nil, nil
	before.Index, after.Index = 0, 0
	if diff := stateDiff(before, after); diff != "" {
		t.Fatalf("state after restore differs: %s", diff)
	}
	if err := putValue(ctx, hc.Member(2), "later", 1); err != nil {
		t.Fatal(err)
	}
}

func waitValue(t *testing.T, ctx context.Context, c *ha.Cluster, key string, want uint64) {
	t.Helper()
	for {
		got, ok, err := getValue(ctx, c, key, ha.Stale)
		if err == nil && ok && got == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never caught up: %s = %d (present %v, err %v), want %d", c.ID(), key, got, ok, err, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
