package ha_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
	"github.com/xenha/xenha/internal/testenv"
)

// fill writes zeros into a file in dir until the file system is full, and
// returns the file's path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	// Top up whatever partial block is left.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return path
}

// The leader's disk fills up. It steps down (its write fails with an error
// that says why), the others elect a leader and go on taking writes, and the
// full member reports the failure as an event and in the errors of writes
// made through it. Every acknowledged write is kept; once there is room
// again the member catches up, and it restarts with everything.
func TestFullDiskLosesNothing(t *testing.T) {
	testenv.NeedRoot(t) // a size-limited tmpfs for one member's data
	disk := t.TempDir()
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=16m"); err != nil {
		testenv.Absent(t, "mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(disk, syscall.MNT_DETACH) })
	hc := hatest.New(t, 3, hatest.WithTCP(), hatest.WithConfig(func(i int, cfg *ha.Config) {
		if i == 0 {
			cfg.DataDir = filepath.Join(disk, "h1")
		}
	}))
	ctx := ctxT(t, 150*time.Second)
	// h1, whose disk will fill, leads.
	for {
		l, err := hc.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l == 0 {
			break
		}
		_ = hc.Member(l).TransferLeadership(ctx)
		time.Sleep(50 * time.Millisecond)
	}
	h1, h2 := hc.Member(0), hc.Member(1)
	events := h1.Subscribe(ctx)
	acked := map[string]uint64{}
	put := func(m *ha.Cluster, key string, v uint64, d time.Duration) error {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		err := putValue(wctx, m, key, v)
		if err == nil {
			acked[key] = v
		}
		return err
	}
	for i := range 10 {
		if err := put(h1, fmt.Sprintf("before-%02d", i), uint64(i+1), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	filler := fill(t, disk)
	// bbolt reuses the free pages inside its file, so the first writes may
	// still succeed; write until one needs more room than there is.
	named := 0
	for i := 0; named == 0 && i < 500; i++ {
		err := put(h1, fmt.Sprintf("full-h1-%03d", i), uint64(100+i), 3*time.Second)
		switch {
		case errors.Is(err, syscall.ENOSPC):
			named++
		case err != nil && !errors.Is(err, ha.ErrNoLeader):
			// While h2 and h3 elect a leader after h1 stepped down, h1
			// may rightly know none; any other error must name the disk.
			t.Errorf("write through h1 with its disk full: %v; want an error that names the full disk", err)
		}
		if err != nil && i < 20 {
			t.Logf("write through h1 with its disk full: %v", err)
		}
	}
	if named == 0 {
		t.Fatal("no write through h1 named its full disk")
	}
	for i := range 5 {
		if err := put(h2, fmt.Sprintf("full-h2-%02d", i), uint64(200+i), 20*time.Second); err != nil {
			t.Fatalf("write through h2 while h1's disk is full: %v", err)
		}
	}
	waitEvent(t, ctx, events, ha.EventStoreFailed, "no space left on device")
	for key, v := range acked {
		if got, ok, err := getValue(ctx, h2, key, ha.Consistent); err != nil || !ok || got != v {
			t.Fatalf("acknowledged %s=%d reads %d, %v, %v on h2", key, v, got, ok, err)
		}
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ctx, events, ha.EventStoreRecovered, "")
	if err := put(h1, "after", 300, 30*time.Second); err != nil {
		t.Fatalf("write through h1 once its disk has room: %v", err)
	}
	hc.Crash(0)
	if err := hc.Restart(0); err != nil {
		t.Fatal(err)
	}
	h1 = hc.Member(0)
	eventually(t, ctx, "restarted h1 holds every acknowledged write", func() bool {
		for key, v := range acked {
			if got, ok, err := getValue(ctx, h1, key, ha.Stale); err != nil || !ok || got != v {
				return false
			}
		}
		return true
	})
}

// waitEvent waits for an event of kind whose message contains text.
func waitEvent(t *testing.T, ctx context.Context, events <-chan ha.Event, kind ha.EventKind, text string) {
	t.Helper()
	for {
		select {
		case e := <-events:
			if e.Kind == kind && strings.Contains(e.Message, text) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %s event with %q", kind, text)
		}
	}
}
