package ha_test

import (
	"context"
	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
	"slices"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

// Maintenance drains a host (its VMs stop there and start elsewhere, with
// their disks handed over) and gives it nothing new; Migrate moves one VM.
func TestFailoverMaintenanceAndMigrate(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	vms := testVMs(6)
	for i := range vms {
		vms[i].Spec.Volumes = []string{"disk-" + vms[i].Name}
	}
	if err := w.AddVMs(ctx, vms...); err != nil {
		t.Fatal(err)
	}
	drained := w.VMsOn("h2")
	if len(drained) == 0 {
		t.Fatalf("nothing on h2:\n%s", w.Describe())
	}
	if err := w.Any().Maintenance(ctx, "h2", true); err != nil {
		t.Fatal(err)
	}
	for _, vm := range drained {
		host, err := w.WaitRunning(ctx, vm, "h2")
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Store.Writers("disk-" + vm); !slices.Equal(got, []string{host}) {
			t.Errorf("disk of %s written by %v after the drain, want [%s]", vm, got, host)
		}
	}
	if got := w.VMsOn("h2"); len(got) != 0 {
		t.Fatalf("h2 in maintenance still holds %v", got)
	}
	if s := w.State(); len(s.Fences) != 0 {
		t.Fatalf("a drain fenced: %+v", s.Fences)
	}
	// Back from maintenance, an operator moves one VM there.
	if err := w.Any().Maintenance(ctx, "h2", false); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx, "h2 online", func(s *ha.State) bool { return s.Hosts["h2"].State == ha.HostOnline }); err != nil {
		t.Fatal(err)
	}
	vm := drained[0]
	if err := w.Any().Migrate(ctx, vm, "h2"); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx, vm+" on h2", func(s *ha.State) bool { return s.VMs[vm].Host == "h2" }); err != nil {
		t.Fatal(err)
	}
	if host, err := w.WaitRunning(ctx, vm, ""); err != nil || host != "h2" {
		t.Fatalf("%s on %q (%v), want h2", vm, host, err)
	}
}

// A guest that ignores the shutdown request of a migration holds the agent
// for nothing: when the host then loses its lease, its other VMs are
// isolated while that shutdown is still waiting.
func TestFailoverSlowShutdownDoesNotDelayIsolation(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.FenceBehavior(fencetest.Fail(fence.ErrUnreachable)))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	a, b := hatest.VMSpec("deaf", 512, 1, 0), hatest.VMSpec("other", 512, 1, 1)
	a.Policy.Preferred, b.Policy.Preferred = []string{"h2"}, []string{"h2"}
	a.Spec.Volumes = []string{"disk-deaf"} // so it moves by stop and start, not live
	if err := w.AddVMs(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	if err := w.MakeFollower(ctx, 1); err != nil {
		t.Fatal(err)
	}
	hv := w.Host("h2").Hyper
	if err := hv.SetGuest("deaf", xenctltest.Guest{IgnoreACPI: true}); err != nil {
		t.Fatal(err)
	}
	if err := w.Any().Migrate(ctx, "deaf", "h3"); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, func() bool {
		d, err := hv.Domain(ctx, "deaf")
		return err == nil && d.State == xenctl.StateShuttingDown
	}); err != nil {
		t.Fatal(err)
	}
	w.Partition([]int{1}, []int{0, 2})
	if err := waitFor(ctx, func() bool { return len(w.RunningOn("other")) == 0 }); err != nil {
		t.Fatal(err)
	}
	if on := w.Hyper.Active("deaf"); len(on) != 1 || on[0] != "h2" {
		t.Fatalf("deaf is active on %v when other was isolated; want still on h2, its shutdown still waiting", on)
	}
}

// VMs without cluster volumes leave a host in maintenance by live
// migration: the hypervisors hand them over and no VM is restarted.
func TestFailoverMaintenanceLiveMigration(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(6)...); err != nil {
		t.Fatal(err)
	}
	drained := w.VMsOn("h2")
	if len(drained) == 0 {
		t.Fatalf("nothing on h2:\n%s", w.Describe())
	}
	starts := map[string]int{}
	for _, id := range []string{"h1", "h3"} {
		starts[id] = w.Host(id).Hyper.CallCount(xenctltest.MethodStart)
	}
	if err := w.Any().Maintenance(ctx, "h2", true); err != nil {
		t.Fatal(err)
	}
	for _, vm := range drained {
		if _, err := w.WaitRunning(ctx, vm, "h2"); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.Host("h2").Hyper.CallCount(xenctltest.MethodMigrate); n < len(drained) {
		t.Errorf("%d live migrations from h2, want %d", n, len(drained))
	}
	for _, id := range []string{"h1", "h3"} {
		if n := w.Host(id).Hyper.CallCount(xenctltest.MethodStart) - starts[id]; n != 0 {
			t.Errorf("%d domains started on %s during a live drain, want 0", n, id)
		}
	}
	// An operator moves one back, live as well.
	if err := w.Any().Maintenance(ctx, "h2", false); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx, "h2 online", func(s *ha.State) bool { return s.Hosts["h2"].State == ha.HostOnline }); err != nil {
		t.Fatal(err)
	}
	if err := w.Any().Migrate(ctx, drained[0], "h2"); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx, drained[0]+" on h2", func(s *ha.State) bool { return s.VMs[drained[0]].Host == "h2" }); err != nil {
		t.Fatal(err)
	}
	if host, err := w.WaitRunning(ctx, drained[0], ""); err != nil || host != "h2" {
		t.Fatalf("%s on %q (%v), want h2", drained[0], host, err)
	}
}

// Hosts report what they observe in batches and only on change: a quiet
// cluster commits no vm.observed at all, and a crash is reported.
func TestFailoverReportsOnlyChanges(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(6)...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the start-up reports land
	ch := w.Member(0).Subscribe(ctx)
	count := func(d time.Duration) int {
		n := 0
		end := time.After(d)
		for {
			select {
			case e := <-ch:
				if e.Kind == ha.EventApplied && e.Message == "vm.observed" {
					n++
				}
			case <-end:
				return n
			}
		}
	}
	if n := count(time.Second); n != 0 {
		t.Fatalf("%d vm.observed commits in a quiet second, want 0", n)
	}
	host := w.State().VMs["vm00"].Host
	if err := w.Host(host).Hyper.CrashGuest("vm00"); err != nil {
		t.Fatal(err)
	}
	if n := count(time.Second); n == 0 {
		t.Fatal("a guest crash was not reported")
	}
}
