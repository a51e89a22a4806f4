package watchdog_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/fence/watchdog"
)

// fakeDevice is a FIFO with a reader that plays the watchdog hardware: it
// records every keep-alive and the magic close, and says whether it would
// have reset the machine by now.
type fakeDevice struct {
	path    string
	timeout time.Duration

	mu       sync.Mutex
	pets     []time.Time
	disarmed bool
	eof      bool
}

func newFakeDevice(t *testing.T, timeout time.Duration) *fakeDevice {
	d := &fakeDevice{path: filepath.Join(t.TempDir(), "watchdog"), timeout: timeout}
	if err := syscall.Mkfifo(d.path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, err := os.Open(d.path) // blocks until the keeper opens it
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		buf := make([]byte, 64)
		for {
			n, err := f.Read(buf)
			now := time.Now()
			d.mu.Lock()
			for _, c := range buf[:n] {
				if c == 'V' {
					d.disarmed = true
				} else {
					d.disarmed = false
					d.pets = append(d.pets, now)
				}
			}
			if err != nil {
				d.eof = true
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		// Unblock a reader still waiting for a writer.
		if f, err := os.OpenFile(d.path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		<-done
	})
	return d
}

// fired reports whether the hardware would have reset the host: armed, and
// no keep-alive for longer than the timeout.
func (d *fakeDevice) fired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.disarmed || len(d.pets) == 0 {
		return false
	}
	return time.Since(d.pets[len(d.pets)-1]) > d.timeout
}

func (d *fakeDevice) lastPet() (time.Time, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pets) == 0 {
		return time.Time{}, 0
	}
	return d.pets[len(d.pets)-1], len(d.pets)
}

func runKeeper(t *testing.T, k *watchdog.Keeper) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, watchdog.ErrClosed) {
			t.Errorf("Keeper.Run: %v", err)
		}
	})
}

const (
	lease   = 150 * time.Millisecond
	timeout = 100 * time.Millisecond
	pet     = 20 * time.Millisecond
)

func TestKeeperStopsFeedingAtLeaseExpiry(t *testing.T) {
	dev := newFakeDevice(t, timeout)
	k, err := watchdog.Open(dev.path, watchdog.WithTimeout(timeout), watchdog.WithPetInterval(pet))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	runKeeper(t, k)
	until := time.Now().Add(lease)
	k.Feed(until)
	time.Sleep(lease + 3*timeout)
	last, n := dev.lastPet()
	if n < 2 {
		t.Fatalf("only %d keep-alives while the lease was valid", n)
	}
	kn, klast := k.Pets()
	if klast.After(until) {
		t.Fatalf("keeper petted at %s, after the lease expiry %s", klast, until)
	}
	if kn != n {
		t.Fatalf("keeper wrote %d keep-alives, device read %d", kn, n)
	}
	if !dev.fired() {
		t.Fatalf("device did not fire: last pet %s ago", time.Since(last))
	}
}

func TestKeeperKeepsHostAliveWhileRenewed(t *testing.T) {
	// The keeper must keep writing keep-alives while the lease is renewed.
	// Whether they come fast enough for real hardware is a timing matter, for
	// the benchmarks: a test that asserted no gap longer than the timeout
	// would fail whenever a loaded machine starves the keeper.
	const timeout = 400 * time.Millisecond
	dev := newFakeDevice(t, timeout)
	k, err := watchdog.Open(dev.path, watchdog.WithTimeout(timeout), watchdog.WithPetInterval(pet))
	if err != nil {
		t.Fatal(err)
	}
	runKeeper(t, k)
	_, seen := dev.lastPet()
	for i := 0; i < 6; i++ {
		k.Feed(time.Now().Add(time.Minute))
		deadline := time.Now().Add(10 * time.Second) // a guard, not a measure
		for {
			if _, n := dev.lastPet(); n > seen {
				seen = n
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no keep-alive after renewal %d while the lease was valid (%d so far)", i, seen)
			}
			time.Sleep(pet)
		}
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(timeout + 100*time.Millisecond)
	dev.mu.Lock()
	disarmed := dev.disarmed
	dev.mu.Unlock()
	if !disarmed || dev.fired() {
		t.Fatal("Close did not disarm the device with the magic 'V'")
	}
}

func TestKeeperOnRegularFileAndRevokedLease(t *testing.T) {
	p := filepath.Join(t.TempDir(), "wd")
	os.WriteFile(p, nil, 0o600)
	k, err := watchdog.Open(p, watchdog.WithTimeout(timeout), watchdog.WithPetInterval(pet))
	if err != nil {
		t.Fatal(err)
	}
	runKeeper(t, k)
	k.Feed(time.Now().Add(time.Hour))
	time.Sleep(3 * pet)
	k.Feed(time.Time{}) // lease revoked: stop at once
	n, _ := k.Pets()
	time.Sleep(3 * pet)
	if n2, _ := k.Pets(); n2 != n || n == 0 {
		t.Fatalf("pets before revoke %d, after %d; want >0 and no more", n, n2)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	if !strings.HasSuffix(string(data), "V") || strings.Count(string(data), ".") != n {
		t.Fatalf("device file %q: want %d keep-alives then the magic V", data, n)
	}
}

func TestOpenRejects(t *testing.T) {
	if _, err := watchdog.Open(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "driver") {
		t.Fatalf("missing device: %v", err)
	}
	// /dev/null is a character device that takes no watchdog ioctls.
	if _, err := watchdog.Open("/dev/null", watchdog.WithTimeout(time.Second)); !errors.Is(err, watchdog.ErrNotWatchdog) {
		t.Fatalf("Open(/dev/null) = %v; want ErrNotWatchdog", err)
	}
	p := filepath.Join(t.TempDir(), "wd")
	os.WriteFile(p, nil, 0o600)
	if _, err := watchdog.Open(p, watchdog.WithTimeout(time.Second), watchdog.WithPetInterval(2*time.Second)); err == nil {
		t.Fatal("accepted a pet interval longer than the timeout")
	}
}

// leader is the leader's view of lease renewals.
type leader struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (l *leader) renewed(host string, at time.Time) {
	l.mu.Lock()
	l.last[host] = at
	l.mu.Unlock()
}

func (l *leader) lastRenewal(ctx context.Context, host string) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.last[host]
	if !ok {
		return time.Time{}, fence.ErrUnknownHost
	}
	return t, nil
}

// TestConformance: the victim renewed its lease once and then went silent
// (partitioned); the fencer's proof must come only after its watchdog fired.
func TestConformance(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Subject {
		dev := newFakeDevice(t, timeout)
		k, err := watchdog.Open(dev.path, watchdog.WithTimeout(timeout), watchdog.WithPetInterval(pet))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		runKeeper(t, k)
		l := &leader{last: map[string]time.Time{}}
		now := time.Now()
		l.renewed("host-b", now)
		k.Feed(now.Add(lease))
		// Wait for the first keep-alive: the host is up.
		for _, n := dev.lastPet(); n == 0; _, n = dev.lastPet() {
			time.Sleep(time.Millisecond)
		}
		f, err := watchdog.NewFencer(l.lastRenewal, lease, timeout, watchdog.WithMargin(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return fencetest.Subject{Fencer: f, Host: "host-b",
			IsOff: func(context.Context) (bool, error) { return dev.fired(), nil }}
	})
}

func TestFencerSeesRenewalWhileWaiting(t *testing.T) {
	l := &leader{last: map[string]time.Time{}}
	l.renewed("host-b", time.Now())
	f, err := watchdog.NewFencer(l.lastRenewal, lease, timeout, watchdog.WithMargin(0))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(lease / 2)
		l.renewed("host-b", time.Now()) // the host was only slow
	}()
	p, err := f.Fence(t.Context(), "host-b")
	if !errors.Is(err, fence.ErrNotOff) || p != (fence.Proof{}) {
		t.Fatalf("Fence with a renewal during the wait = %v, %v; want ErrNotOff", p, err)
	}
}

func TestExpiry(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if got, want := watchdog.Expiry(at, 5*time.Second, 10*time.Second, 2*time.Second), at.Add(17*time.Second); !got.Equal(want) {
		t.Fatalf("Expiry = %s, want %s", got, want)
	}
	if _, err := watchdog.NewFencer(nil, time.Second, time.Second); err == nil {
		t.Fatal("NewFencer accepted a nil LastRenewal")
	}
	if _, err := watchdog.NewFencer(func(context.Context, string) (time.Time, error) { return at, nil }, 0, time.Second); err == nil {
		t.Fatal("NewFencer accepted a zero lease")
	}
	// An expiry in the past gives a proof at once, timed at the expiry.
	f, _ := watchdog.NewFencer(func(context.Context, string) (time.Time, error) { return at, nil }, time.Second, time.Second)
	p, err := f.Fence(t.Context(), "h")
	if err != nil || !p.Time.Equal(at.Add(3*time.Second)) || p.Kind != fence.ProofSelfFence {
		t.Fatalf("Fence = %v, %v; want a proof at %s (1s+1s+1s margin)", p, err, at.Add(3*time.Second))
	}
}

func TestFenceReturnsWhenContextEnds(t *testing.T) {
	l := &leader{last: map[string]time.Time{"host-b": time.Now()}}
	f, _ := watchdog.NewFencer(l.lastRenewal, time.Hour, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	p, err := f.Fence(ctx, "host-b")
	if !errors.Is(err, context.DeadlineExceeded) || p != (fence.Proof{}) {
		t.Fatalf("Fence = %v, %v; want the context's error and no proof", p, err)
	}
	if !strings.Contains(err.Error(), "expire at") {
		t.Fatalf("error %q should say when the host's lease and watchdog expire", err)
	}
}
