package ha_test

import (
	"context"
	"github.com/xenha/xenha/fence"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// The leader dies in the middle of an incident; the next leader finishes it
// from the replicated state, and recovers the old leader's VMs too.
func TestFailoverLeaderCrashMidIncident(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 5)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(10)...); err != nil {
		t.Fatal(err)
	}
	l, _ := w.WaitLeader(ctx)
	leader := w.ID(l)
	victim := w.ID((l + 1) % 5)
	moving := append(w.VMsOn(victim), w.VMsOn(leader)...)
	// Slow fencing keeps the incident open long enough to lose the leader.
	w.Fencer.Script(victim, fencetest.Succeed().WithLatency(400*time.Millisecond))
	w.Kill(w.Index(victim))
	if err := w.Wait(ctx, victim+" suspect", func(s *ha.State) bool { return s.Hosts[victim].State == ha.HostSuspect }); err != nil {
		t.Fatal(err)
	}
	w.Kill(l)
	for _, vm := range moving {
		host, err := w.WaitRunning(ctx, vm, "")
		if err != nil {
			t.Fatal(err)
		}
		if host == victim || host == leader {
			t.Fatalf("VM %s on dead host %s", vm, host)
		}
	}
	s := w.State()
	fenced := map[string]int{}
	for _, f := range s.Fences {
		fenced[f.Host]++
	}
	if fenced[victim] != 1 || fenced[leader] != 1 {
		t.Fatalf("fence records per host %v, want one each for %s and %s", fenced, victim, leader)
	}
}

// Two hosts and a witness: either host's death is recovered on the other.
func TestFailoverTwoHostsAndWitness(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.Witness(2))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(4)...); err != nil {
		t.Fatal(err)
	}
	if got := w.VMsOn("h3"); len(got) != 0 {
		t.Fatalf("the witness was given VMs %v", got)
	}
	for _, victim := range []int{0, 1} {
		survivor := w.ID(1 - victim)
		w.Kill(victim)
		for _, vm := range testVMs(4) {
			host, err := w.WaitRunning(ctx, vm.Name, w.ID(victim))
			if err != nil {
				t.Fatal(err)
			}
			if host != survivor {
				t.Fatalf("VM %s on %s, want %s", vm.Name, host, survivor)
			}
		}
		if err := w.Revive(victim); err != nil {
			t.Fatal(err)
		}
		if err := w.WaitHosts(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A host that misses renewals for a moment, again and again, is marked
// suspect each time and fenced never; when it really dies it is fenced once.
func TestFailoverFlappingHost(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(3)...); err != nil {
		t.Fatal(err)
	}
	l, _ := w.WaitLeader(ctx)
	vi := (l + 1) % 3
	victim := w.ID(vi)
	// A slow BMC: the host is back before a fence could complete.
	w.Fencer.Script(victim, fencetest.Succeed().WithLatency(5*time.Second))
	var rest []int
	for i := range 3 {
		if i != vi {
			rest = append(rest, i)
		}
	}
	suspects := 0
	for range 3 {
		w.Partition([]int{vi}, rest)
		if err := w.Wait(ctx, victim+" suspect", func(s *ha.State) bool { return s.Hosts[victim].State == ha.HostSuspect }); err != nil {
			t.Fatal(err)
		}
		suspects++
		w.Heal()
		if err := w.Wait(ctx, victim+" back online", func(s *ha.State) bool { return s.Hosts[victim].State == ha.HostOnline }); err != nil {
			t.Fatal(err)
		}
	}
	s := w.State()
	if len(s.Fences) != 0 || s.Hosts[victim].Epoch != 1 {
		t.Fatalf("flapping host fenced: records %+v, epoch %d", s.Fences, s.Hosts[victim].Epoch)
	}
	// Now it dies for real.
	w.Fencer.Script(victim, fencetest.Succeed().WithLatency(50*time.Millisecond))
	w.Kill(vi)
	if err := w.Wait(ctx, victim+" fenced", func(s *ha.State) bool { return s.Hosts[victim].State == ha.HostFenced }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // room for a second, wrong, fence
	s = w.State()
	if n := len(s.Fences); n != 1 {
		t.Fatalf("%d fence records for one failure, want 1: %+v", n, s.Fences)
	}
	t.Logf("%d suspicions, %d fence calls", suspects, w.Fencer.FenceCalls(victim))
}

// A libvirtd restart (and a longer libvirtd outage) moves nothing: an
// unreachable hypervisor is never taken for stopped VMs.
func TestFailoverLibvirtdRestartMovesNothing(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(6)...); err != nil {
		t.Fatal(err)
	}
	before := w.State()
	hv := w.Host("h1").Hyper
	starts := hv.CallCount(xenctltest.MethodStart)
	hv.StopDaemon()
	time.Sleep(hatest.SharedCPU().Lease + 500*time.Millisecond) // longer than DeadTime and Lease
	hv.StartDaemon()
	hv.RestartDaemon()
	time.Sleep(500 * time.Millisecond)
	after := w.State()
	for name, vm := range before.VMs {
		if got := after.VMs[name]; got.Host != vm.Host || got.OwnerEpoch != vm.OwnerEpoch {
			t.Errorf("VM %s moved from %s to %s", name, vm.Host, got.Host)
		}
		if on := w.RunningOn(name); !slices.Equal(on, []string{vm.Host}) {
			t.Errorf("VM %s runs on %v, want [%s]", name, on, vm.Host)
		}
	}
	if len(after.Fences) != 0 || len(after.Incidents) != 0 {
		t.Errorf("fences %+v, incidents %d after a libvirtd restart", after.Fences, len(after.Incidents))
	}
	if n := hv.CallCount(xenctltest.MethodStart) - starts; n != 0 {
		t.Errorf("%d domain starts on h1 after the restart, want 0", n)
	}
}

// A VM that crashes on a healthy host is restarted there MaxLocalRestarts
// times, then relocated.
func TestFailoverLocalRestartThenRelocate(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vm := testVMs(1)[0]
	if err := w.AddVMs(ctx, vm); err != nil {
		t.Fatal(err)
	}
	home := w.VMsOn("h1")
	host := w.State().VMs[vm.Name].Host
	_ = home
	hv := w.Host(host).Hyper
	for i := 1; i <= vm.Policy.MaxLocalRestarts; i++ {
		if err := hv.CrashGuest(vm.Name); err != nil {
			t.Fatal(err)
		}
		if err := w.Wait(ctx, "local restart", func(s *ha.State) bool {
			v := s.VMs[vm.Name]
			return v.LocalRestarts == i && v.Host == host && v.Observed.State == xenctl.StateRunning
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := hv.CrashGuest(vm.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitRunning(ctx, vm.Name, host); err != nil {
		t.Fatal(err)
	}
}

// Capacity, priority, start order and anti-affinity hold in a real failover,
// and a VM left without room is placed as soon as room appears.
func TestFailoverPlacementRules(t *testing.T) {
	t.Parallel()
	const gib = 1 << 20
	w := hatest.NewWorld(t, 3, hatest.HostSize(0, 4*gib, 8), hatest.HostSize(1, 4*gib, 8), hatest.HostSize(2, 4*gib, 8))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	mk := func(name string, n int, memMiB uint64, prio int, group string, pref string) ha.VM {
		vm := hatest.VMSpec(name, memMiB, 1, n)
		vm.Policy.Priority, vm.Policy.AntiAffinity = prio, group
		if pref != "" {
			vm.Policy.Preferred = []string{pref}
		}
		return vm
	}
	vms := []ha.VM{
		mk("db1", 0, 1024, 10, "db", "h1"),
		mk("db2", 1, 1024, 10, "db", "h2"),
		mk("db3", 2, 1024, 10, "db", "h3"),
		mk("web", 3, 2048, 5, "", "h1"),
		mk("batch", 4, 2560, 0, "", "h2"),
	}
	vms[4].Policy.Restart = ha.RestartBestEffort
	if err := w.AddVMs(ctx, vms...); err != nil {
		t.Fatal(err)
	}
	// h1 holds db1 and web (3 GiB); h2 db2 and batch (4 GiB); h3 db3.
	w.Kill(0)
	// web (priority 5) fits only on h3; db1 may go nowhere (anti-affinity).
	if _, err := w.WaitRunning(ctx, "web", "h1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx, "db1 pending", func(s *ha.State) bool {
		return strings.Contains(s.VMs["db1"].Pending, "anti-affinity")
	}); err != nil {
		t.Fatal(err)
	}
	if on := w.RunningOn("db1"); len(on) != 0 {
		t.Fatalf("db1 runs on %v next to another db VM", on)
	}
	// Room appears: h1 comes back, and db1 is placed at once.
	if err := w.Revive(0); err != nil {
		t.Fatal(err)
	}
	if host, err := w.WaitRunning(ctx, "db1", ""); err != nil || host != "h1" {
		t.Fatalf("db1 on %q (%v), want h1", host, err)
	}
}

// A restart VM whose host died makes room by stopping a best-effort VM.
func TestFailoverEvictsBestEffort(t *testing.T) {
	t.Parallel()
	const gib = 1 << 20
	w := hatest.NewWorld(t, 3, hatest.HostSize(0, 2*gib, 8), hatest.HostSize(1, 2*gib, 8), hatest.HostSize(2, 2*gib, 8))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	important := hatest.VMSpec("important", 1536, 1, 0)
	important.Policy.Preferred = []string{"h2"}
	batch1 := hatest.VMSpec("batch1", 1536, 1, 1)
	batch1.Policy.Restart, batch1.Policy.Preferred = ha.RestartBestEffort, []string{"h1"}
	batch3 := hatest.VMSpec("batch3", 1536, 1, 3)
	batch3.Policy.Restart, batch3.Policy.Preferred = ha.RestartBestEffort, []string{"h3"}
	if err := w.AddVMs(ctx, important, batch1, batch3); err != nil {
		t.Fatal(err)
	}
	if err := w.MakeFollower(ctx, 1); err != nil {
		t.Fatal(err)
	}
	w.Kill(1)
	host, err := w.WaitRunning(ctx, "important", "h2")
	if err != nil {
		t.Fatal(err)
	}
	evicted := map[string]string{"h1": "batch1", "h3": "batch3"}[host]
	if on := w.RunningOn(evicted); len(on) != 0 {
		t.Fatalf("%s still runs on %v next to important on %s", evicted, on, host)
	}
	if err := w.Wait(ctx, evicted+" pending", func(s *ha.State) bool { return s.VMs[evicted].Pending != "" }); err != nil {
		t.Fatal(err)
	}
}

// leaseExpiryWorld is three hosts under FencePolicy AllowLeaseExpiry, each
// with a simulated watchdog, a fencing device that never answers, and four
// VMs running, checked by the invariant checker.
func leaseExpiryWorld(t *testing.T) (*hatest.World, context.Context) {
	p := hatest.SharedCPU()
	// The watchdog's timeout is what a live host's renewals may lag behind
	// its lease before it is reset: on a starved, race-instrumented CPU that
	// lag reached 0.6 s, so 1.5 s.
	p.FencePolicy, p.WatchdogTimeout, p.ReassignAfter = ha.AllowLeaseExpiry, 1500*time.Millisecond, 3600*time.Millisecond
	w := hatest.NewWorld(t, 3, hatest.Profile(p), hatest.FenceBehavior(fencetest.Fail(fence.ErrUnreachable)), hatest.Watchdogs(p.WatchdogTimeout))
	w.CheckInvariants(t)
	ctx := ctxT(t, 40*time.Second)
	if err := w.AddVMs(ctx, testVMs(4)...); err != nil {
		t.Fatal(err)
	}
	return w, ctx
}

// With FencePolicy AllowLeaseExpiry (hosts with a hardware watchdog), a
// silent host whose fencing device never answers counts as fenced once
// its lease and the watchdog's timeout have run out.
func TestFailoverLeaseExpiryPolicy(t *testing.T) {
	t.Parallel()
	w, ctx := leaseExpiryWorld(t)
	l, _ := w.WaitLeader(ctx)
	victim := w.ID((l + 1) % 3)
	onVictim := w.VMsOn(victim)
	w.Kill(w.Index(victim)) // the watchdog would have reset it: model it as off
	for _, vm := range onVictim {
		if _, err := w.WaitRunning(ctx, vm, victim); err != nil {
			t.Fatal(err)
		}
	}
	s := w.State()
	if len(s.Fences) != 1 || s.Fences[0].Method != "lease-expiry" {
		t.Fatalf("fence records %+v, want one by lease-expiry", s.Fences)
	}
}

// The same for a host that is cut off but alive: its member feeds its lease
// to a watchdog Keeper, so the keep-alives stop when the lease ends and the
// watchdog resets the host before the leader counts the silence as a fence
// and restarts the host's VMs. Without the feeding, the cut-off host would
// still hold its VMs (paused by its isolation response) when they start
// elsewhere.
func TestFailoverLeaseExpiryWatchdogResetsCutOffHost(t *testing.T) {
	t.Parallel()
	w, ctx := leaseExpiryWorld(t)
	if err := w.MakeFollower(ctx, 1); err != nil {
		t.Fatal(err)
	}
	onVictim := w.VMsOn("h2")
	w.Partition([]int{1}, []int{0, 2})
	for _, vm := range onVictim {
		host, err := w.WaitRunning(ctx, vm, "h2")
		if err != nil {
			t.Fatalf("%v\n%s", err, w.Describe())
		}
		if held := w.Hyper.Active(vm); !slices.Equal(held, []string{host}) {
			t.Fatalf("VM %s runs on %s and is held (running or paused) on %v", vm, host, held)
		}
	}
	if n := w.WatchdogResets("h2"); n != 1 {
		t.Fatalf("h2's watchdog reset it %d times, want once", n)
	}
	for _, h := range []string{"h1", "h3"} {
		if n := w.WatchdogResets(h); n != 0 {
			t.Fatalf("%s, on the majority side, was reset %d times by its watchdog", h, n)
		}
	}
	s := w.State()
	if len(s.Fences) != 1 || s.Fences[0].Method != "lease-expiry" || s.Fences[0].Host != "h2" {
		t.Fatalf("fence records %+v, want one by lease-expiry for h2", s.Fences)
	}
}

// When the leader dies, the next leader finds it unreachable and fences it
// without waiting out InitDead (60 s here, longer than the test may run),
// while the live hosts, which answer, are never fenced.
func TestFailoverLeaderDeathSkipsInitDead(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.Configure(func(i int, cfg *ha.Config) { cfg.InitDead = time.Minute }))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(6)...); err != nil {
		t.Fatal(err)
	}
	l, _ := w.WaitLeader(ctx)
	leader := w.ID(l)
	moving := w.VMsOn(leader)
	w.Kill(l)
	for _, vm := range moving {
		host, err := w.WaitRunning(ctx, vm, leader)
		if err != nil {
			t.Fatal(err)
		}
		if host == leader {
			t.Fatalf("VM %s on the dead leader", vm)
		}
	}
	for _, f := range w.State().Fences {
		if f.Host != leader {
			t.Fatalf("live host %s fenced: %+v", f.Host, f)
		}
	}
}
