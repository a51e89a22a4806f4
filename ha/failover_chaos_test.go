package ha_test

import (
	"context"
	"flag"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/xenha/xenha/ha/hatest"
)

var (
	chaosSeed  = flag.Uint64("chaos.seed", 0, "seed for TestFailoverChaos (0: random)")
	chaosSteps = flag.Int("chaos.steps", 5, "fault steps in TestFailoverChaos")
)

// Random host deaths, partitions, libvirtd restarts and guest crashes, one
// at a time, with the invariant checker watching every millisecond; after
// each fault is repaired every VM must run again somewhere.
func TestFailoverChaos(t *testing.T) {
	t.Parallel()
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos seed %d (rerun with -chaos.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	// A budget per step: a long run (-chaos.steps=20) ran out of a fixed
	// 90 s at its last step, with every invariant held.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+time.Duration(*chaosSteps)*15*time.Second)
	defer cancel()
	vms := testVMs(8)
	for i := range vms {
		if i%2 == 0 {
			vms[i].Spec.Volumes = []string{"disk-" + vms[i].Name}
		}
	}
	if err := w.AddVMs(ctx, vms...); err != nil {
		t.Fatal(err)
	}
	pause := func() { time.Sleep(time.Duration(300+rng.IntN(2500)) * time.Millisecond) }
	for step := range *chaosSteps {
		victim := rng.IntN(3)
		id := w.ID(victim)
		switch rng.IntN(4) {
		case 0:
			t.Logf("step %d: power off %s", step, id)
			w.Kill(victim)
			pause()
			if err := w.Revive(victim); err != nil {
				t.Fatal(err)
			}
		case 1:
			t.Logf("step %d: partition %s away", step, id)
			var rest []int
			for i := range 3 {
				if i != victim {
					rest = append(rest, i)
				}
			}
			w.Partition([]int{victim}, rest)
			pause()
			w.Heal()
		case 2:
			t.Logf("step %d: restart libvirtd on %s", step, id)
			if h := w.Host(id).Hyper; h != nil && !w.Killed(id) {
				h.StopDaemon()
				pause()
				h.StartDaemon()
			}
		case 3:
			vm := vms[rng.IntN(len(vms))].Name
			t.Logf("step %d: crash guest %s", step, vm)
			for _, h := range w.RunningOn(vm) {
				_ = w.Host(h).Hyper.CrashGuest(vm)
			}
			pause()
		}
		// Repair: hosts that were fenced meanwhile (a proof may land after
		// a host came back, and is the truth: the fake device powers it
		// off again) are powered on until all are online.
		for {
			for i := range 3 {
				if w.Killed(w.ID(i)) {
					if err := w.Revive(i); err != nil {
						t.Fatal(err)
					}
				}
			}
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			err := w.WaitHosts(wctx)
			wcancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("step %d (seed %d): %v", step, seed, err)
			}
		}
		for _, vm := range vms {
			if _, err := w.WaitRunning(ctx, vm.Name, ""); err != nil {
				t.Fatalf("step %d (seed %d): %v", step, seed, err)
			}
		}
	}
	s := w.State()
	for _, inc := range s.Incidents {
		t.Logf("%s", inc.Timeline(true))
	}
}
