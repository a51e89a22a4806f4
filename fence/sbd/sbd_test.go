package sbd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/sbd"
)

// victim is a simulated host running the SBD watcher. When the watcher
// fences it, it is down; it "reboots" after a moment and runs the watcher
// again, which keeps it down while the pill is still in its slot.
type victim struct {
	mu     sync.Mutex
	down   bool
	events []sbd.Event
}

func startVictim(t *testing.T, path, host string) *victim {
	v := &victim{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	ready := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w, err := sbd.NewWatcher([]string{path}, host, func(e sbd.Event) {
				v.mu.Lock()
				v.down = true
				v.events = append(v.events, e)
				v.mu.Unlock()
			}, sbd.OnRead(func(s sbd.Slot) {
				once.Do(func() { close(ready) })
				if !s.Type.Fatal() {
					v.mu.Lock()
					v.down = false // booted and running
					v.mu.Unlock()
				}
			}))
			if err != nil {
				t.Error(err)
				return
			}
			err = w.Run(ctx)
			if err != nil && !errors.Is(err, sbd.ErrFenced) && ctx.Err() == nil {
				t.Errorf("watcher of %s: %v", host, err)
				return
			}
			select { // reboot
			case <-time.After(30 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("watcher of %s never read its slot", host)
	}
	return v
}

func (v *victim) isDown() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.down
}

func (v *victim) lastEvent() (sbd.Event, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.events) == 0 {
		return sbd.Event{}, 0
	}
	return v.events[len(v.events)-1], len(v.events)
}

func newDevice(t *testing.T, owners ...string) string {
	path := filepath.Join(t.TempDir(), "sbd.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := sbd.Create(t.Context(), path, testHeader, owners...)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	return path
}

func TestConformanceFile(t *testing.T) {
	fencetestRun(t, newDevice(t))
}

// TestTwoHostsShareDevice: host-a fences host-b through the shared file;
// only host-b dies, and it learns who sent the pill.
func TestTwoHostsShareDevice(t *testing.T) {
	path := newDevice(t, "host-a", "host-b", "host-c")
	a := startVictim(t, path, "host-a")
	b := startVictim(t, path, "host-b")
	f, err := sbd.New("host-a", map[string][]string{"host-b": {path}, "host-c": {path}}, sbd.WithMessage(sbd.MsgReset))
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Fence(t.Context(), "host-b")
	if err != nil {
		t.Fatal(err)
	}
	if !b.isDown() || a.isDown() {
		t.Fatalf("after fencing host-b: a down=%v, b down=%v", a.isDown(), b.isDown())
	}
	e, _ := b.lastEvent()
	if e.Reason != sbd.ReasonPill || e.Slot.Sender != "host-a" || e.Slot.Type != sbd.MsgReset {
		t.Fatalf("host-b's event = %+v; want a reset pill from host-a", e)
	}
	if p.Kind != fence.ProofSelfFence {
		t.Errorf("proof kind %v, want self-fence (the victim kills itself)", p.Kind)
	}
	if !strings.Contains(p.Evidence, `"reset"`) || !strings.Contains(p.Evidence, "slot 1") {
		t.Fatalf("evidence %q should name the pill and slot", p.Evidence)
	}
	// host-c has a slot but no watcher: fencing still waits msgwait and
	// proves it (a host that is not watching is down or lost its device).
	if _, err := f.Fence(t.Context(), "host-c"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fence(t.Context(), "host-d"); !errors.Is(err, fence.ErrUnknownHost) {
		t.Fatalf("unconfigured host: %v", err)
	}
	f2, _ := sbd.New("host-a", map[string][]string{"host-d": {path}})
	if _, err := f2.Fence(t.Context(), "host-d"); !errors.Is(err, fence.ErrUnknownHost) || !errors.Is(err, sbd.ErrNoSlot) {
		t.Fatalf("host without a slot: %v", err)
	}
}

func corrupt(t *testing.T, path string, off int64) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0xde, 0xad}, off); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptHeaderIsRefused(t *testing.T) {
	path := newDevice(t, "host-a", "host-b")
	corrupt(t, path, 14)
	f, _ := sbd.New("host-a", map[string][]string{"host-b": {path}})
	p, err := f.Fence(t.Context(), "host-b")
	if !errors.Is(err, sbd.ErrCorrupt) || p != (fence.Proof{}) {
		t.Fatalf("Fence on a corrupt header = %v, %v; want ErrCorrupt", p, err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "host-b") {
		t.Fatalf("error %q should name the device and host", err)
	}
	if _, err := sbd.Open(t.Context(), path); !errors.Is(err, sbd.ErrCorrupt) {
		t.Fatalf("Open: %v", err)
	}
}

// TestCorruptSlotFencesVictim: a victim that cannot read its slot for its
// watchdog timeout fences itself (the pill could be there unseen), and the
// fencer refuses to write into a corrupt slot.
func TestCorruptSlotFencesVictim(t *testing.T) {
	path := newDevice(t, "host-a", "host-b")
	v := startVictim(t, path, "host-b")
	corrupt(t, path, 2*sbd.BlockSize+20) // slot 1 = host-b
	deadline := time.Now().Add(10 * time.Second)
	for !v.isDown() {
		if time.Now().After(deadline) {
			t.Fatal("victim with an unreadable slot never fenced itself")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e, _ := v.lastEvent()
	if e.Reason != sbd.ReasonDeviceLost || !errors.Is(e.Err, sbd.ErrCorrupt) {
		t.Fatalf("event = %+v; want device lost with ErrCorrupt", e)
	}
	f, _ := sbd.New("host-a", map[string][]string{"host-b": {path}})
	if _, err := f.Fence(t.Context(), "host-b"); !errors.Is(err, sbd.ErrCorrupt) {
		t.Fatalf("Fence into a corrupt slot: %v; want ErrCorrupt", err)
	}
}

func TestPillPresentAtStartKeepsHostDown(t *testing.T) {
	path := newDevice(t, "host-a", "host-b")
	d, err := sbd.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Send(t.Context(), "host-b", sbd.MsgOff, "host-a"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	v := startVictim(t, path, "host-b")
	if !v.isDown() {
		// startVictim returns after the first read; the pill was there.
		time.Sleep(50 * time.Millisecond)
	}
	if !v.isDown() {
		t.Fatal("a host booting with a pill in its slot kept running")
	}
	f, _ := sbd.New("host-a", map[string][]string{"host-b": {path}})
	if err := f.Unfence(t.Context(), "host-b"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for v.isDown() {
		if time.Now().After(deadline) {
			t.Fatal("host stayed down after its slot was cleared")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAllocateAndCreateErrors(t *testing.T) {
	path := newDevice(t, "host-a")
	d, err := sbd.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i, h := range []string{"host-b", "host-c", "host-d"} {
		s, err := d.Allocate(t.Context(), h)
		if err != nil || s.Index != i+1 {
			t.Fatalf("Allocate(%s) = %+v, %v", h, s, err)
		}
	}
	if s, err := d.Allocate(t.Context(), "host-b"); err != nil || s.Index != 1 {
		t.Fatalf("re-Allocate = %+v, %v; want the existing slot 1", s, err)
	}
	if _, err := d.Allocate(t.Context(), "host-e"); !errors.Is(err, sbd.ErrNoSlot) {
		t.Fatalf("Allocate on a full device: %v", err)
	}
	if _, err := sbd.Create(t.Context(), path, testHeader, "a", "a"); err == nil {
		t.Fatal("Create accepted a repeated owner")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, make([]byte, 8192), 0o600)
	if _, err := sbd.Open(t.Context(), empty); !errors.Is(err, sbd.ErrNotSBD) {
		t.Fatalf("Open(uninitialised) = %v; want ErrNotSBD", err)
	}
}
