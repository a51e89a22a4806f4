package ha_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

func voters(t *testing.T, c *ha.Cluster) (vs, nonvoters []string) {
	t.Helper()
	ms, err := c.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Voter {
			vs = append(vs, m.ID)
		} else {
			nonvoters = append(nonvoters, m.ID)
		}
	}
	return vs, nonvoters
}

func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("never happened: %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func hostOf(t *testing.T, ctx context.Context, c *ha.Cluster, id string) ha.Host {
	t.Helper()
	s, err := c.State(ctx, ha.Consistent)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := s.Hosts[id]
	if !ok {
		t.Fatalf("no host %s in state", id)
	}
	return *h
}

func TestVoterCapAndPromotion(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 6)
	ctx := ctxT(t, 60*time.Second)
	l := waitLeader(t, ctx, hc)
	leader := hc.Member(l)
	vs, nvs := voters(t, leader)
	if len(vs) != 5 || len(nvs) != 1 || nvs[0] != "h6" {
		t.Fatalf("voters %v, non-voters %v; want 5 voters and h6 as non-voter", vs, nvs)
	}
	if h := hostOf(t, ctx, leader, "h6"); h.Role != ha.RoleNonVoter {
		t.Fatalf("h6 role %s, want nonvoter", h.Role)
	}
	events := leader.Subscribe(ctx)

	// Remove a voter (not the leader) through another follower.
	victim, via := -1, -1
	for i := range 5 {
		if i == l {
			continue
		}
		if victim < 0 {
			victim = i
		} else if via < 0 {
			via = i
		}
	}
	if err := hc.Member(via).Remove(ctx, hc.ID(victim)); err != nil {
		t.Fatalf("remove %s: %v", hc.ID(victim), err)
	}
	// The promotion is a Raft configuration change followed by a host.role
	// command: both land, in that order.
	eventually(t, ctx, "h6 promoted and recorded as voter", func() bool {
		vs, nvs := voters(t, leader)
		return len(vs) == 5 && len(nvs) == 0 && hostOf(t, ctx, leader, "h6").Role == ha.RoleVoter
	})
	if h := hostOf(t, ctx, leader, hc.ID(victim)); h.State != ha.HostLeft {
		t.Fatalf("removed %s is %s, want left", hc.ID(victim), h.State)
	}
	seen := map[ha.EventKind]string{}
	eventually(t, ctx, "left and promoted events", func() bool {
		for {
			select {
			case e := <-events:
				seen[e.Kind] = e.Host
				continue
			default:
			}
			return seen[ha.EventMemberLeft] == hc.ID(victim) && seen[ha.EventMemberPromoted] == "h6"
		}
	})
}

func TestWitnessVotes(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3, hatest.WithConfig(func(i int, cfg *ha.Config) {
		if i == 2 {
			cfg.Role = ha.RoleWitness
		}
	}))
	ctx := ctxT(t, 30*time.Second)
	if _, err := hc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if h := hostOf(t, ctx, hc.Member(0), "h3"); h.Role != ha.RoleWitness {
		t.Fatalf("h3 role %s, want witness", h.Role)
	}
	vs, _ := voters(t, hc.Member(0))
	if len(vs) != 3 {
		t.Fatalf("voters %v: the witness must vote", vs)
	}
}

func TestRemoveNeverLosesQuorum(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3)
	ctx := ctxT(t, 60*time.Second)
	l := waitLeader(t, ctx, hc)
	a, b := (l+1)%3, (l+2)%3
	hc.Crash(b)
	leader := hc.Member(l)
	eventually(t, ctx, "leader sees the crashed member unreachable", func() bool {
		reach, listed := reachable(leader, hc.ID(b))
		return listed && !reach
	})
	// Removing the live follower would leave the leader and a dead voter:
	// no majority.
	err := leader.Remove(ctx, hc.ID(a))
	if !errors.Is(err, ha.ErrQuorumAtRisk) {
		t.Fatalf("removing live %s with %s dead: got %v, want ErrQuorumAtRisk", hc.ID(a), hc.ID(b), err)
	}
	if vs, _ := voters(t, leader); len(vs) != 3 {
		t.Fatalf("voters %v changed by a refused removal", vs)
	}
	// Removing the dead one is fine.
	if err := hc.Member(a).Remove(ctx, hc.ID(b)); err != nil {
		t.Fatalf("remove dead %s: %v", hc.ID(b), err)
	}
	if vs, _ := voters(t, leader); len(vs) != 2 {
		t.Fatalf("voters %v, want 2", vs)
	}
	if err := putValue(ctx, hc.Member(a), "still", 1); err != nil {
		t.Fatalf("write after removal: %v", err)
	}
}

// reachable reports whether leader's Members lists id, and as reachable.
func reachable(leader *ha.Cluster, id string) (reach, listed bool) {
	ms, _ := leader.Members()
	for _, m := range ms {
		if m.ID == id {
			return m.Reachable, true
		}
	}
	return false, false
}

// A leader that saw a peer fail, lost leadership, and leads again must judge
// the peer afresh: Raft reports a failing peer's recovery only within the
// term in which it failed, so a failure remembered across terms would list a
// live member as unreachable for good (and RemoveDeadAfter would remove it).
func TestReachableAfterLeadershipReturns(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3)
	ctx := ctxT(t, 90*time.Second)
	l := waitLeader(t, ctx, hc)
	cut := (l + 1) % 3
	hc.Partition([]int{l, (l + 2) % 3}, []int{cut})
	eventually(t, ctx, "leader sees the cut-off member unreachable", func() bool {
		reach, listed := reachable(hc.Member(l), hc.ID(cut))
		return listed && !reach
	})
	if err := hc.MakeFollower(ctx, l); err != nil {
		t.Fatal(err)
	}
	hc.Heal()
	// Hand leadership around until l leads again.
	for {
		now, err := hc.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if now == l {
			break
		}
		_ = hc.Member(now).TransferLeadership(ctx)
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, ctx, "leader again sees the healed member reachable", func() bool {
		reach, _ := reachable(hc.Member(l), hc.ID(cut))
		return reach
	})
}

func TestLeaderLeaves(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 4)
	ctx := ctxT(t, 60*time.Second)
	l := waitLeader(t, ctx, hc)
	old := hc.Member(l)
	if err := old.Leave(ctx); err != nil {
		t.Fatalf("leader %s leaving: %v", hc.ID(l), err)
	}
	other := hc.Member((l + 1) % 4)
	eventually(t, ctx, "old leader out of the configuration", func() bool {
		ms, _ := other.Members()
		for _, m := range ms {
			if m.ID == hc.ID(l) {
				return false
			}
		}
		return len(ms) == 3
	})
	if h := hostOf(t, ctx, other, hc.ID(l)); h.State != ha.HostLeft {
		t.Fatalf("%s is %s, want left", hc.ID(l), h.State)
	}
	if err := putValue(ctx, other, "after-leave", 3); err != nil {
		t.Fatal(err)
	}
}

func TestDeadMemberRemovedAutomatically(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 5, hatest.WithConfig(func(i int, cfg *ha.Config) {
		cfg.RemoveDeadAfter = 500 * time.Millisecond
	}))
	ctx := ctxT(t, 60*time.Second)
	l := waitLeader(t, ctx, hc)
	dead := []int{(l + 1) % 5, (l + 2) % 5}
	for _, d := range dead {
		hc.Crash(d)
	}
	leader := hc.Member(l)
	eventually(t, ctx, "dead members removed", func() bool {
		vs, _ := voters(t, leader)
		return len(vs) == 3
	})
	for _, d := range dead {
		if h := hostOf(t, ctx, leader, hc.ID(d)); h.State != ha.HostLeft {
			t.Fatalf("%s is %s, want left", hc.ID(d), h.State)
		}
	}
	// A third death must not be auto-removed: 2 of 3 would remain, but
	// fewer than three voters is below the floor.
	hc.Crash((l + 3) % 5)
	time.Sleep(time.Second) // give the removal loop its chance to misbehave
	if vs, _ := voters(t, leader); len(vs) != 3 {
		t.Fatalf("voters %v: auto-removal went below three voters", vs)
	}
}

func TestEventsNeverBlockTheCluster(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3)
	ctx := ctxT(t, 60*time.Second)
	if _, err := hc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	c := hc.Member(0)
	subCtx, cancel := context.WithCancel(ctx)
	stuck := c.Subscribe(subCtx) // never read
	live := c.Subscribe(ctx)
	got := make(chan ha.Event, 1)
	go func() {
		for e := range live {
			if e.Kind == ha.EventApplied && e.Message == "vm.put" {
				select {
				case got <- e:
				default:
				}
			}
		}
	}()
	for k := range 300 {
		if err := putValue(ctx, c, fmt.Sprintf("vm%d", k%5), uint64(k+1)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case e := <-got:
		if e.Index == 0 || e.Time.IsZero() {
			t.Fatalf("event %+v lacks index or time", e)
		}
	case <-ctx.Done():
		t.Fatal("no vm.put event")
	}
	if c.EventsDropped() == 0 {
		t.Fatal("a subscriber that never reads lost no events; its buffer should have overflowed")
	}
	cancel()
	eventually(t, ctx, "stuck subscription closed", func() bool {
		for {
			select {
			case _, ok := <-stuck:
				if !ok {
					return true
				}
			default:
				return false
			}
		}
	})
}

func TestTransferLeadership(t *testing.T) {
	c := hatest.New(t, 3, hatest.WithInsecure())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := (l + 1) % 3
	if err := c.Member(follower).TransferLeadership(ctx); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("TransferLeadership on a follower = %v, want ErrNotLeader", err)
	}
	if err := c.Member(l).TransferLeadership(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.MakeFollower(ctx, l); err != nil {
		t.Fatal(err)
	}
	nl, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if nl == l {
		t.Fatalf("member %d still leads after handing leadership over", l)
	}
}
