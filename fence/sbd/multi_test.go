package sbd_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/sbd"
)

// watch runs one watcher (no reboot) over devs and reports its event.
func watch(t *testing.T, devs []string, host string) (<-chan sbd.Event, *atomic.Int64) {
	events := make(chan sbd.Event, 1)
	var reads atomic.Int64
	w, err := sbd.NewWatcher(devs, host, func(e sbd.Event) { events <- e }, sbd.OnRead(func(sbd.Slot) { reads.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for reads.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("watcher never read a slot")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return events, &reads
}

func threeDevices(t *testing.T) []string {
	return []string{newDevice(t, "host-a", "host-b"), newDevice(t, "host-a", "host-b"), newDevice(t, "host-a", "host-b")}
}

func TestThreeDevicesOneMissing(t *testing.T) {
	devs := threeDevices(t)
	events, _ := watch(t, devs, "host-b")
	os.Remove(devs[2]) // the fencer loses one device; the victim still has it open
	f, _ := sbd.New("host-a", map[string][]string{"host-b": devs})
	p, err := f.Fence(t.Context(), "host-b")
	if err != nil {
		t.Fatalf("2 of 3 devices: %v; want a proof", err)
	}
	if !strings.Contains(p.Evidence, "1 of 3 devices failed") {
		t.Fatalf("evidence %q should report the failed device", p.Evidence)
	}
	select {
	case e := <-events:
		if e.Reason != sbd.ReasonPill {
			t.Fatalf("event %+v; want a pill", e)
		}
	default:
		t.Fatal("proof returned but the victim did not fence itself")
	}
}

func TestThreeDevicesNoMajority(t *testing.T) {
	devs := threeDevices(t)
	os.Remove(devs[1])
	os.Remove(devs[2])
	f, _ := sbd.New("host-a", map[string][]string{"host-b": devs})
	p, err := f.Fence(t.Context(), "host-b")
	if !errors.Is(err, fence.ErrUnreachable) || p != (fence.Proof{}) {
		t.Fatalf("1 of 3 devices: %v, %v; want ErrUnreachable and no proof", p, err)
	}
	if !strings.Contains(err.Error(), "1 of 3 devices") {
		t.Fatalf("error %q should count the devices", err)
	}
	// Unfence must reach every device, or a pill could stay behind.
	if err := f.Unfence(t.Context(), "host-b"); err == nil {
		t.Fatal("Unfence with two devices missing succeeded")
	}
}

// TestVictimLosingMajorityFencesItself: the victim can still read one device
// of three, with no pill on it; the pill could be on the two it lost.
func TestVictimLosingMajorityFencesItself(t *testing.T) {
	devs := threeDevices(t)
	events, _ := watch(t, devs, "host-b")
	for _, d := range devs[1:] {
		corrupt(t, d, 2*sbd.BlockSize+20)
	}
	select {
	case e := <-events:
		if e.Reason != sbd.ReasonDeviceLost || !errors.Is(e.Err, sbd.ErrCorrupt) {
			t.Fatalf("event %+v; want device lost", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("victim with one readable device of three kept running")
	}
}

// TestVictimWithOneBadDeviceKeepsRunning: one unreadable device of three is
// not enough to fence.
func TestVictimWithOneBadDeviceKeepsRunning(t *testing.T) {
	devs := threeDevices(t)
	events, reads := watch(t, devs, "host-b")
	corrupt(t, devs[0], 2*sbd.BlockSize+20)
	before := reads.Load()
	time.Sleep(3 * testHeader.Watchdog)
	select {
	case e := <-events:
		t.Fatalf("fenced itself with 2 of 3 devices readable: %+v", e)
	default:
	}
	if reads.Load() <= before {
		t.Fatal("watcher stopped reading")
	}
}

func TestWatcherNeedsMajorityAtStart(t *testing.T) {
	devs := threeDevices(t)
	os.Remove(devs[0])
	os.Remove(devs[1])
	w, _ := sbd.NewWatcher(devs, "host-b", func(sbd.Event) { t.Error("fenced at start") })
	if err := w.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "opened 1 of 3") {
		t.Fatalf("Run = %v; want an error saying too few devices opened", err)
	}
}
