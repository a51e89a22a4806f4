package ha_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

// waitLeader waits for hc to agree on a leader and returns its index.
func waitLeader(t testing.TB, ctx context.Context, hc *hatest.Cluster) int {
	t.Helper()
	l, err := hc.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// putValue writes a register: VM key's MemoryKiB.
func putValue(ctx context.Context, c *ha.Cluster, key string, v uint64) error {
	return c.PutVM(ctx, ha.VM{Name: key, Spec: ha.VMSpec{MemoryKiB: v}, Policy: ha.Policy{Restart: ha.RestartOff}})
}

func getValue(ctx context.Context, c *ha.Cluster, key string, mode ha.ReadMode) (uint64, bool, error) {
	s, err := c.State(ctx, mode)
	if err != nil {
		return 0, false, err
	}
	vm, ok := s.VMs[key]
	if !ok {
		return 0, false, nil
	}
	return vm.Spec.MemoryKiB, true, nil
}

func TestFormAndReplicateInMemory(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3)
	ctx := ctxT(t, 30*time.Second)
	if _, err := hc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// Writes from every member, including followers (forwarded).
	for i := range 3 {
		if err := putValue(ctx, hc.Member(i), fmt.Sprintf("vm%d", i), uint64(100+i)); err != nil {
			t.Fatalf("write via %s: %v", hc.ID(i), err)
		}
	}
	for i := range 3 {
		for k := range 3 {
			v, ok, err := getValue(ctx, hc.Member(i), fmt.Sprintf("vm%d", k), ha.Consistent)
			if err != nil || !ok || v != uint64(100+k) {
				t.Fatalf("%s reads vm%d = %d, %v, %v; want %d", hc.ID(i), k, v, ok, err, 100+k)
			}
		}
	}
	s, err := hc.Member(0).State(ctx, ha.Consistent)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hosts) != 3 {
		t.Fatalf("hosts = %v, want 3", s.Hosts)
	}
	for id, h := range s.Hosts {
		if h.Role != ha.RoleVoter || h.Incarnation == "" || h.Epoch != 1 {
			t.Errorf("host %s = %+v; want a voter with an incarnation and epoch 1", id, h)
		}
	}
}

// stateDiff compares two states as JSON; "" if equal.
func stateDiff(a, b *ha.State) string {
	ja, _ := json.MarshalIndent(a, "", " ")
	jb, _ := json.MarshalIndent(b, "", " ")
	if bytes.Equal(ja, jb) {
		return ""
	}
	return fmt.Sprintf("\n--- first\n%s\n--- second\n%s", ja, jb)
}

func TestUnknownCommandHaltsEveryMember(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3)
	ctx := ctxT(t, 30*time.Second)
	l := waitLeader(t, ctx, hc)
	if err := putValue(ctx, hc.Member(l), "before", 1); err != nil {
		t.Fatal(err)
	}
	var subs []<-chan ha.Event
	for i := range 3 {
		subs = append(subs, hc.Member(i).Subscribe(ctx))
	}
	// An entry from a newer build: a kind this build does not know.
	raw := []byte(`{"v":1,"kind":"vm.teleport","req":"r1","at":"2026-11-23T12:00:00Z","body":{"to":"mars"}}`)
	if err := ha.RawApply(hc.Member(l), raw); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		for e := range sub {
			if e.Kind == ha.EventHalted {
				break
			}
		}
		_, err := hc.Member(i).State(ctx, ha.Stale)
		if !errors.Is(err, ha.ErrHalted) || !errors.Is(err, ha.ErrUnknownCommand) {
			t.Fatalf("%s after the unknown entry: %v, want ErrHalted", hc.ID(i), err)
		}
	}
	// Later writes are not applied anywhere.
	err := putValue(ctx, hc.Member(l), "after", 2)
	if !errors.Is(err, ha.ErrHalted) {
		t.Fatalf("write after the halt: %v, want ErrHalted", err)
	}
}

func TestForwardedRetryAppliedOnce(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3)
	ctx := ctxT(t, 30*time.Second)
	l := waitLeader(t, ctx, hc)
	f := hc.Member((l + 1) % 3)
	if err := putValue(ctx, f, "gone", 1); err != nil {
		t.Fatal(err)
	}
	// The same request twice, as a follower does when a reply was lost: the
	// second is answered like the first instead of failing as "not found".
	for attempt := range 2 {
		if err := ha.ProposeDeleteVM(ctx, f, "gone", "retry-1"); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	err := ha.ProposeDeleteVM(ctx, f, "gone", "other")
	if !errors.Is(err, ha.ErrNotFound) {
		t.Fatalf("a new deletion: %v, want ErrNotFound", err)
	}
}

func TestMinorityWriteIsIndeterminateNotFailed(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3)
	ctx := ctxT(t, 30*time.Second)
	l := waitLeader(t, ctx, hc)
	hc.Partition([]int{l})
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := putValue(wctx, hc.Member(l), "maybe", 1)
	if !errors.Is(err, ha.ErrIndeterminate) {
		t.Fatalf("write on a cut-off leader: %v, want ErrIndeterminate", err)
	}
	// A member that cannot reach any leader never sent the write: that is
	// not indeterminate, it simply did not happen.
	hc.Heal()
	if l, err = hc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	f := (l + 1) % 3
	hc.Partition([]int{f})
	wctx2, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	err = putValue(wctx2, hc.Member(f), "never", 1)
	if err == nil || errors.Is(err, ha.ErrIndeterminate) || !errors.Is(err, ha.ErrNoLeader) {
		t.Fatalf("write on an isolated follower: %v, want ErrNoLeader and not indeterminate", err)
	}
	hc.Heal()
	if _, err := hc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := getValue(ctx, hc.Member(f), "never", ha.Consistent); err != nil || ok {
		t.Fatalf("a write that was never sent is present (%v, %v)", ok, err)
	}
}

func TestInMemoryRestartCatchesUpFromSnapshot(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3)
	ctx := ctxT(t, 30*time.Second)
	l := waitLeader(t, ctx, hc)
	f := (l + 1) % 3
	for k := range 5 {
		if err := putValue(ctx, hc.Member(l), fmt.Sprintf("a%d", k), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := hc.Member(f).Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	hc.Crash(f)
	// Written while it is down: it learns these from the log after restart.
	for k := range 5 {
		if err := putValue(ctx, hc.Member(l), fmt.Sprintf("b%d", k), 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := hc.Restart(f); err != nil {
		t.Fatal(err)
	}
	if hc.Member(f).Fresh() {
		t.Fatal("restarted in-memory member lost its state")
	}
	for k := range 5 {
		waitValue(t, ctx, hc.Member(f), fmt.Sprintf("a%d", k), 1)
		waitValue(t, ctx, hc.Member(f), fmt.Sprintf("b%d", k), 2)
	}
}

// tcpCluster starts n members over TCP + bbolt. Tests run with -race on a
// loaded 2-core machine, where FastLAN's 500 ms Raft timeouts were seen to
// elect over and over; the tests assert behaviour, not speed, so they use
// Raft's 1 s defaults and keep the fast failure-handling timings.
func tcpCluster(t testing.TB, n int, opts ...hatest.Option) *hatest.Cluster {
	p := ha.FastLAN()
	d := ha.DefaultConfig()
	p.HeartbeatTimeout, p.ElectionTimeout, p.LeaderLeaseTimeout, p.CommitTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout, d.CommitTimeout
	return hatest.New(t, n, append([]hatest.Option{hatest.WithTCP(), hatest.WithProfile(p)}, opts...)...)
}
