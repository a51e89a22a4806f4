package ha_test

import (
	"context"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

// A VM that may not be restarted where it stopped (MaxLocalRestarts 0) and
// has nowhere else to go is stopped by maintenance and placed on the same
// host again when maintenance ends. The host's agent once remembered that it
// had started the VM under the same restart count and waited for a restart
// grant, while the leader, seeing the VM stopped on a healthy host with no
// restarts left, only looked for another host: the VM stayed stopped.
func TestFailoverMaintenanceOffStartsVMWithoutLocalRestarts(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.Witness(1), hatest.Witness(2))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	vm := hatest.VMSpec("solo", 512, 1, 0)
	vm.Policy.MaxLocalRestarts = 0
	vm.Spec.Volumes = []string{"disk-solo"}
	if err := w.AddVMs(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if err := w.Any().Maintenance(ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, func() bool { return len(w.Hyper.Active("solo")) == 0 }); err != nil {
		t.Fatalf("solo still active on %v with h1 in maintenance:\n%s", w.Hyper.Active("solo"), w.Describe())
	}
	if err := w.Any().Maintenance(ctx, "h1", false); err != nil {
		t.Fatal(err)
	}
	if host, err := w.WaitRunning(ctx, "solo", ""); err != nil || host != "h1" {
		t.Fatalf("solo on %q (%v) after maintenance ended, want running on h1:\n%s", host, err, w.Describe())
	}
	if s := w.State(); s.VMs["solo"].Host != "h1" || s.Hosts["h1"].State != ha.HostOnline {
		t.Fatalf("state after maintenance: %+v", s.VMs["solo"])
	}
}
