package libvirt_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/libvirt"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// testHostXML describes an empty simulated host for libvirt's test driver:
// each test:///path URI is a private host with this node and no domains.
const testHostXML = `<node>
  <cpu><mhz>2000</mhz><model>Skylake</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
</node>
`

// openTestHost opens a private test-driver host.
func openTestHost(t testing.TB) *libvirt.Hypervisor {
	t.Helper()
	p := filepath.Join(t.TempDir(), "host.xml")
	if err := os.WriteFile(p, []byte(testHostXML), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := libvirt.Open(ctx, "test://"+p)
	if err != nil {
		t.Fatalf("Open test driver: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestConformanceTestDriver(t *testing.T) {
	xenctltest.Run(t, func(t *testing.T) xenctl.Hypervisor { return openTestHost(t) })
}

func TestTestDriverRejectsWrongType(t *testing.T) {
	h := openTestHost(t)
	xml := xenctltest.DomainXMLType("qemu", "vm1", "4dea22b3-1d52-d8f3-2516-782e98ab3fa0", 65536, 1)
	_, err := h.Define(t.Context(), xml)
	if !errors.Is(err, xenctl.ErrInvalidDomain) {
		t.Fatalf("defining a qemu domain on the test driver = %v, want ErrInvalidDomain", err)
	}
}

func TestTestDriverHostInfo(t *testing.T) {
	h := openTestHost(t)
	info, err := h.HostInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Hypervisor != "TEST" || info.MemoryKiB != 16777216 || info.CPUs != 8 {
		t.Fatalf("HostInfo = %+v; want the test host's 8 CPUs and 16 GiB", info)
	}
}

func TestTestDriverNoMigration(t *testing.T) {
	ctx := t.Context()
	a, b := openTestHost(t), openTestHost(t)
	if _, err := a.Define(ctx, xenctltest.DomainXML("vm1", "4dea22b3-1d52-d8f3-2516-782e98ab3fa0", 65536, 1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	err := a.Migrate(ctx, "vm1", xenctl.MigrateOptions{URI: b.URI()}, nil)
	if !errors.Is(err, xenctl.ErrNotSupported) {
		t.Fatalf("Migrate on the test driver = %v, want ErrNotSupported", err)
	}
	if d, err := a.Domain(ctx, "vm1"); err != nil || d.State != xenctl.StateRunning {
		t.Fatalf("after refused migration: %+v, %v", d, err)
	}
}

// TestRetryConnect starts a Hypervisor before its "libvirtd" (a test-driver
// host file that does not exist yet): calls say unavailable, and the first
// connection reaches watchers as EventReconnected.
func TestRetryConnect(t *testing.T) {
	p := filepath.Join(t.TempDir(), "late.xml")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := libvirt.Open(ctx, "test://"+p); !errors.Is(err, xenctl.ErrUnavailable) {
		t.Fatalf("Open of an absent host = %v, want ErrUnavailable", err)
	}
	h, err := libvirt.Open(ctx, "test://"+p, libvirt.WithRetryConnect(), libvirt.WithReconnectBackoff(20*time.Millisecond))
	if err != nil {
		t.Fatalf("Open with retry: %v", err)
	}
	defer h.Close()
	if _, err := h.Domains(ctx); !errors.Is(err, xenctl.ErrUnavailable) {
		t.Fatalf("Domains before the host exists = %v, want ErrUnavailable", err)
	}
	events, err := h.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(testHostXML), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Kind != xenctl.EventReconnected || len(ev.Inventory) != 0 {
			t.Fatalf("first event %+v; want EventReconnected with an empty inventory", ev)
		}
	case <-ctx.Done():
		t.Fatal("no EventReconnected within a minute of the host appearing")
	}
	if _, err := h.Domains(ctx); err != nil {
		t.Fatalf("Domains once connected: %v", err)
	}
}
