package watchdog_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/sbd"
	"github.com/xenha/xenha/fence/watchdog"
)

// TestSBDWatcherFeedsWatchdog: the host's lease is valid for an hour, but its
// SBD watcher stops (hung or crashed). The watcher's health source lapses,
// the keep-alives stop, and the watchdog fires: a pill can never go unseen
// by a host that keeps running.
func TestSBDWatcherFeedsWatchdog(t *testing.T) {
	const timeout = 400 * time.Millisecond // room for a loaded machine
	dir := t.TempDir()
	img := filepath.Join(dir, "sbd.img")
	os.WriteFile(img, nil, 0o600)
	d, err := sbd.Create(t.Context(), img, sbd.Header{Slots: 2, Loop: 10 * time.Millisecond, Watchdog: timeout, MsgWait: 2 * timeout}, "host-b")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()

	dev := newFakeDevice(t, timeout)
	k, err := watchdog.Open(dev.path, watchdog.WithTimeout(timeout), watchdog.WithPetInterval(pet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	runKeeper(t, k)
	k.Feed(time.Now().Add(time.Hour))

	w, err := sbd.NewWatcher([]string{img}, "host-b", func(sbd.Event) {},
		sbd.OnHealthy(func(until time.Time) { k.FeedSource("sbd", until) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()

	time.Sleep(3 * timeout)
	if dev.fired() {
		t.Fatal("device fired while lease and watcher were both healthy")
	}
	if _, n := dev.lastPet(); n == 0 {
		t.Fatal("no keep-alives while healthy")
	}
	cancel() // the watcher dies
	<-done
	stopped := time.Now()
	time.Sleep(3 * timeout)
	last, _ := dev.lastPet()
	if !dev.fired() || last.After(stopped.Add(timeout)) {
		t.Fatalf("after the watcher stopped: fired=%v, last pet %s after it; want pets to end within the watchdog timeout", dev.fired(), last.Sub(stopped))
	}
}

func TestFeedSourcesEarliestRules(t *testing.T) {
	p := filepath.Join(t.TempDir(), "wd")
	os.WriteFile(p, nil, 0o600)
	k, err := watchdog.Open(p, watchdog.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if !k.FedUntil().IsZero() {
		t.Fatal("fed before any source")
	}
	soon := time.Now().Add(time.Minute)
	k.Feed(time.Now().Add(time.Hour))
	k.FeedSource("sbd", soon)
	if !k.FedUntil().Equal(soon) {
		t.Fatalf("FedUntil = %s, want the earlier source's %s", k.FedUntil(), soon)
	}
}
