package ha_test

import (
	"context"
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
