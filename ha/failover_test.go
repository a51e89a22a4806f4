package ha_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

func testVMs(n int) []ha.VM {
	var out []ha.VM
	for i := range n {
		out = append(out, hatest.VMSpec(fmt.Sprintf("vm%02d", i), 512, 1, i))
	}
	return out
}

// A host that dies has its VMs restarted on the others, and only after a
// fence record for it was committed.
func TestFailoverHostCrash(t *testing.T) {
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vms := testVMs(6)
	for i := range vms {
		vms[i].Spec.Volumes = []string{"disk-" + vms[i].Name}
	}
	if err := w.AddVMs(ctx, vms...); err != nil {
		t.Fatal(err)
	}
	l, err := w.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := w.ID((l + 1) % 3)
	onVictim := w.VMsOn(victim)
	if len(onVictim) == 0 {
		t.Fatalf("no VM on %s to fail over:\n%s", victim, w.Describe())
	}
	w.Kill(w.Index(victim))
	for _, vm := range onVictim {
		host, err := w.WaitRunning(ctx, vm, victim)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Store.Writers("disk-" + vm); !slices.Equal(got, []string{host}) {
			t.Errorf("disk of %s is written by %v, want only %s", vm, got, host)
		}
	}
	s := w.State()
	if len(s.Fences) == 0 || s.Fences[0].Host != victim {
		t.Fatalf("fence records %+v, want one for %s", s.Fences, victim)
	}
	var inc *ha.Incident
	for _, i := range s.Incidents {
		if i.Host == victim {
			inc = i
		}
	}
	if inc == nil {
		t.Fatalf("no incident for %s", victim)
	}
	if err := w.Wait(ctx, "incident closed", func(s *ha.State) bool {
		for _, i := range s.Incidents {
			if i.Host == victim && !i.Closed.IsZero() {
				inc = i
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("timeline:\n%s", inc.Timeline(true))
	// The victim comes back, registers at its new epoch and gets work again.
	if err := w.Revive(w.Index(victim)); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitHosts(ctx); err != nil {
		t.Fatal(err)
	}
}
