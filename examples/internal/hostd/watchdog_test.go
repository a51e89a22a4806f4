package hostd

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/watchdog"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// device makes a regular file standing in for /dev/watchdog: the Keeper
// appends '.' per keep-alive and 'V' when it disarms.
func device(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func written(t *testing.T, dev string) []byte {
	t.Helper()
	b, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// watchdogHost is a one-host pool under allow-lease-expiry whose watchdog
// is the file dev.
func watchdogHost(t *testing.T, dev string) *File {
	ca, err := pki.NewCA("pool")
	if err != nil {
		t.Fatal(err)
	}
	tf, token, _ := files(t, ca, "xen-w")
	f := &File{
		ID: "xen-w", ClusterID: "pool", DataDir: t.TempDir(), Bind: "127.0.0.1:0",
		JoinTokenFile: token, TLS: tf, Profile: "fastlan", Hypervisor: "test:///default",
		Bootstrap:   true,
		FencePolicy: "allow-lease-expiry",
		Timings:     Timings{ReassignAfter: Duration(3 * time.Second)},
		Watchdog:    &Watchdog{Device: dev, Timeout: Duration(2 * time.Second), PetInterval: Duration(20 * time.Millisecond)},
	}
	if err := f.check(); err != nil {
		t.Fatalf("the test's own file is refused: %v", err)
	}
	return f
}

// TestDaemonPetsItsWatchdogWhileItHoldsItsLease runs a daemon whose
// watchdog device is a file: keep-alives are written while the member
// holds its lease, and a clean stop (no pool VM running) disarms the
// device with the magic close.
func TestDaemonPetsItsWatchdogWhileItHoldsItsLease(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dev := device(t)
	f := watchdogHost(t, dev)

	ready := make(chan *ha.Cluster, 1)
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { done <- run(runCtx, f, slog.New(slog.DiscardHandler), func(c *ha.Cluster) { ready <- c }) }()
	var c *ha.Cluster
	select {
	case c = <-ready:
	case err := <-done:
		t.Fatalf("daemon stopped: %v", err)
	}
	// Wait until the host holds its lease (online), then until keep-alives
	// keep coming after that: more than a few, all of them pets.
	var online int
	for {
		st, err := c.State(ctx, ha.Stale)
		if err != nil {
			t.Fatal(err)
		}
		if h := st.Hosts["xen-w"]; h != nil && h.State == ha.HostOnline {
			if online == 0 {
				online = len(written(t, dev))
			} else if n := len(written(t, dev)); n >= online+5 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("daemon stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("no keep-alives while holding the lease: the device holds %q", written(t, dev))
		case <-time.After(20 * time.Millisecond):
		}
	}
	if got := written(t, dev); strings.Trim(string(got), ".") != "" {
		t.Fatalf("device holds %q before the stop; want keep-alives only", got)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("daemon's exit: %v", err)
	}
	got := written(t, dev)
	if !bytes.HasSuffix(got, []byte("V")) || strings.Trim(string(got[:len(got)-1]), ".") != "" {
		t.Fatalf("device holds %q after a clean stop; want keep-alives, then the magic close V", got)
	}
}

// TestDaemonLeavesItsWatchdogArmedWhenItFails: a daemon that cannot enter
// the pool never held a lease, so it writes no keep-alive, and it does not
// disarm the device: after a crash the old VMs may still run, and only the
// reset stops them.
func TestDaemonLeavesItsWatchdogArmedWhenItFails(t *testing.T) {
	dev := device(t)
	f := watchdogHost(t, dev)
	f.Bootstrap = false // a fresh data directory with neither bootstrap nor join
	if err := run(t.Context(), f, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Fatal("run without bootstrap or join succeeded")
	}
	if got := written(t, dev); len(got) != 0 {
		t.Fatalf("device holds %q; want nothing: no lease, no keep-alive, no disarm", got)
	}
}

// TestSettleWatchdogDisarmsOnlyWithoutPoolVMs: a clean stop disarms the
// device only if the hypervisor runs none of the pool's VMs, since the
// leader will count this host as reset and start them elsewhere.
func TestSettleWatchdogDisarmsOnlyWithoutPoolVMs(t *testing.T) {
	ctx := t.Context()
	h := xenctltest.New("xen-w")
	const uuid = "6b1c2b8e-5d1f-4c1e-9a53-000000000001"
	if _, err := h.Define(ctx, xenctltest.DomainXML("web1", uuid, 1<<20, 1)); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx, "web1"); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name   string
		clean  bool
		vms    map[string]bool
		disarm bool
	}{
		{"clean, no pool VM here", true, map[string]bool{"db1": true}, true},
		{"clean, pool VM running by name", true, map[string]bool{"web1": true}, false},
		{"clean, pool VM running by UUID", true, map[string]bool{uuid: true}, false},
		{"clean, pool unknown", true, nil, false},
		{"not clean", false, map[string]bool{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := device(t)
			k, err := watchdog.Open(dev, watchdog.WithTimeout(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			settleWatchdog(k, tc.clean, tc.vms, h, log)
			if got := bytes.HasSuffix(written(t, dev), []byte("V")); got != tc.disarm {
				t.Fatalf("disarmed = %v, want %v", got, tc.disarm)
			}
			k.Close() // the test's own cleanup
		})
	}
}
