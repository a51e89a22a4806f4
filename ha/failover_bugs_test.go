package ha_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// TestFailoverMoveBackIgnoresReportFromEarlierStay: a VM moved by stop and
// start back to a host that still holds its stopped definition must run
// there and stay. A shut-off report from that host made before it learnt
// of the new assignment (here injected while its start is slow) tells of
// the earlier stay; the leader used to take it for the failure of the new
// assignment and relocate the VM, and the two hosts passed it back and
// forth for good.
func TestFailoverMoveBackIgnoresReportFromEarlierStay(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.Witness(2))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vm := hatest.VMSpec("back", 512, 1, 0)
	vm.Policy.MaxLocalRestarts = 0
	vm.Policy.Preferred = []string{"h1"}
	vm.Spec.Volumes = []string{"disk-back"} // moves by stop and start
	if err := w.AddVMs(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if host, err := w.WaitRunning(ctx, "back", ""); err != nil || host != "h1" {
		t.Fatalf("back on %q (%v), want h1:\n%s", host, err, w.Describe())
	}
	if err := w.Any().Migrate(ctx, "back", "h2"); err != nil {
		t.Fatal(err)
	}
	if host, err := w.WaitRunning(ctx, "back", ""); err != nil || host != "h2" {
		t.Fatalf("back on %q (%v) after a move to h2:\n%s", host, err, w.Describe())
	}
	// h1 keeps its definition, shut off; its next start is slow.
	w.Host("h1").Hyper.Inject(xenctltest.Fault{Method: xenctltest.MethodStart, Domain: "back", Delay: 700 * time.Millisecond, Times: 1})
	if err := w.Any().Migrate(ctx, "back", "h1"); err != nil {
		t.Fatal(err)
	}
	var assigned, epoch uint64
	if err := w.Wait(ctx, "back assigned to h1", func(s *ha.State) bool {
		assigned, epoch = s.VMs["back"].Assigned, s.Hosts["h1"].Epoch
		return s.VMs["back"].Host == "h1"
	}); err != nil {
		t.Fatal(err)
	}
	raw, err := ha.EncodeCommand("vm.observed", map[string]any{"host": "h1", "epoch": epoch, "view": assigned - 1,
		"vms": []map[string]any{{"vm": "back", "state": xenctl.StateShutoff}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ha.RawApply(w.Member(w.Leader()), raw); err != nil {
		t.Fatal(err)
	}
	if host, err := w.WaitRunning(ctx, "back", ""); err != nil || host != "h1" {
		t.Fatalf("back on %q (%v) after a move back to h1:\n%s", host, err, w.Describe())
	}
	if s := w.State(); s.VMs["back"].Assigned != assigned || s.VMs["back"].Released > assigned {
		t.Fatalf("back was moved on from h1 (assigned %d, now %d, released %d):\n%s", assigned, s.VMs["back"].Assigned, s.VMs["back"].Released, w.Describe())
	}
}

// TestFailoverFailedLiveMigrationFallsBack: live migration to a hypervisor
// that cannot do it (libvirt's test driver has no virDomainMigrate3) fails.
// An operator's Migrate then gives up: the VM keeps running on its source,
// and the failure is recorded in the VM's state and an event with the
// hypervisor's error. A maintenance drain afterwards, under another leader,
// moves the VM by stop and start and does not try the migration again.
func TestFailoverFailedLiveMigrationFallsBack(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.Witness(2))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vm := hatest.VMSpec("live", 512, 1, 0)
	vm.Policy.Preferred = []string{"h1"}
	if err := w.AddVMs(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if host, err := w.WaitRunning(ctx, "live", ""); err != nil || host != "h1" {
		t.Fatalf("live on %q (%v), want h1:\n%s", host, err, w.Describe())
	}
	src := w.Host("h1").Hyper
	src.Inject(xenctltest.Fault{Method: xenctltest.MethodMigrate, Err: xenctl.ErrNotSupported})
	events := w.Member(2).Subscribe(ctx)
	if err := w.Any().Migrate(ctx, "live", "h2"); err != nil {
		t.Fatal(err)
	}
	var failed ha.MigrateFailure
	if err := w.Wait(ctx, "the failed migration recorded", func(s *ha.State) bool {
		if f := s.VMs["live"].MigrateFailed; f != nil && s.VMs["live"].Migrating == nil {
			failed = *f
			return true
		}
		return false
	}); err != nil {
		t.Fatalf("%v:\n%s", err, w.Describe())
	}
	if failed.From != "h1" || failed.To != "h2" || !strings.Contains(failed.Error, xenctl.ErrNotSupported.Error()) {
		t.Errorf("recorded failure %+v, want h1 to h2 with the hypervisor's error", failed)
	}
	for ev := range events {
		if ev.Kind == ha.EventMigrateFailed {
			if ev.VM != "live" || ev.Host != "h1" || !strings.Contains(ev.Message, xenctl.ErrNotSupported.Error()) {
				t.Errorf("event %+v", ev)
			}
			break
		}
	}
	if host, err := w.WaitRunning(ctx, "live", ""); err != nil || host != "h1" {
		t.Fatalf("live on %q (%v) after a failed migration, want still on h1:\n%s", host, err, w.Describe())
	}
	// The record is replicated: a new leader does not try again.
	if err := w.MakeFollower(ctx, w.Leader()); err != nil {
		t.Fatal(err)
	}
	if err := w.Any().Maintenance(ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	if host, err := w.WaitRunning(ctx, "live", "h1"); err != nil || host != "h2" {
		t.Fatalf("live on %q (%v) after draining h1, want h2:\n%s", host, err, w.Describe())
	}
	if n := src.CallCount(xenctltest.MethodMigrate); n != 1 {
		t.Errorf("live migration tried %d times, want once", n)
	}
	if f := w.State().VMs["live"].MigrateFailed; f != nil {
		t.Errorf("failure record %+v kept after the VM moved", f)
	}
}

// TestDeleteVMThatRan: DeleteVM of a VM that runs stops it through its
// host and then removes it; one that ran and was stopped is removed too.
// DeleteVM used to delete only VMs no host held, and nothing unplaced a
// stopped VM, so any VM that had ever run could not be deleted.
func TestDeleteVMThatRan(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.Witness(2))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	running, stopped := hatest.VMSpec("running", 256, 1, 1), hatest.VMSpec("stopped", 256, 1, 2)
	running.Spec.Volumes = []string{"disk-running"}
	if err := w.AddVMs(ctx, running, stopped); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"running", "stopped"} {
		if _, err := w.WaitRunning(ctx, name, ""); err != nil {
			t.Fatalf("%v:\n%s", err, w.Describe())
		}
	}
	s := w.State().VMs["stopped"]
	s.Stopped = true
	if err := w.Any().PutVM(ctx, *s); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx, "stopped reported stopped", func(s *ha.State) bool {
		v := s.VMs["stopped"]
		return len(w.Hyper.Active("stopped")) == 0 && v.Observed.Host == v.Host && v.Observed.State == xenctl.StateShutoff
	}); err != nil {
		t.Fatalf("%v:\n%s", err, w.Describe())
	}
	for _, name := range []string{"running", "stopped"} {
		if err := w.Any().DeleteVM(ctx, name); err != nil {
			t.Fatalf("DeleteVM(%s): %v", name, err)
		}
	}
	if err := w.Wait(ctx, "both VMs gone", func(s *ha.State) bool { return len(s.VMs) == 0 }); err != nil {
		t.Fatalf("%v:\n%s", err, w.Describe())
	}
	if on := w.Hyper.Active("running"); len(on) != 0 {
		t.Fatalf("deleted VM still active on %v", on)
	}
	if err := w.Any().DeleteVM(ctx, "running"); !errors.Is(err, ha.ErrNotFound) {
		t.Fatalf("DeleteVM of a deleted VM: %v, want ErrNotFound", err)
	}
}

// TestDeleteVMNeverDefined: a VM whose host could never define it (the
// hypervisor refuses its XML) is deleted too. The host has no domain to
// report on, and used to say nothing about a VM taken off it, so the
// deletion waited for its word for good.
func TestDeleteVMNeverDefined(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3, hatest.Witness(2))
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, h := range []string{"h1", "h2"} {
		w.Host(h).Hyper.Inject(xenctltest.Fault{Method: xenctltest.MethodDefine, Domain: "bad", Err: xenctl.ErrConflict})
	}
	vm := hatest.VMSpec("bad", 256, 1, 3)
	vm.Policy.Restart = ha.RestartBestEffort
	if err := w.Any().PutVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx, "bad reported shut off where it is placed", func(s *ha.State) bool {
		v := s.VMs["bad"]
		return v.Host != "" && v.Observed.Host == v.Host && v.Observed.State == xenctl.StateShutoff
	}); err != nil {
		t.Fatalf("%v:\n%s", err, w.Describe())
	}
	if err := w.Any().DeleteVM(ctx, "bad"); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx, "bad gone", func(s *ha.State) bool { return s.VMs["bad"] == nil }); err != nil {
		t.Fatalf("%v:\n%s", err, w.Describe())
	}
}
