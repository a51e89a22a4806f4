package libvirt_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/libvirt"
)

const (
	guestName = "xenha-it-guest"
	guestUUID = "7e1f2c4a-5b6d-4e8f-9a0b-1c2d3e4f5a6b"
	cpuName   = "xenha-it-avx512"
	cpuUUID   = "7e1f2c4a-5b6d-4e8f-9a0b-1c2d3e4f5a6c"
)

// recorder keeps every event from one Events channel.
type recorder struct {
	mu     sync.Mutex
	events []xenctl.Event
	wake   chan struct{}
}

func record(t *testing.T, h *libvirt.Hypervisor) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := h.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	r := &recorder{wake: make(chan struct{}, 1)}
	go func() {
		for ev := range ch {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

// mark returns a position; since lists events after it.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) since(i int) []xenctl.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events[i:])
}

// waitFor waits for an event of kind (for domain name, unless empty) after
// position from, failing after a minute.
func (r *recorder) waitFor(t *testing.T, from int, kind xenctl.EventKind, name string) xenctl.Event {
	t.Helper()
	guard := time.After(time.Minute)
	for {
		for _, ev := range r.since(from) {
			if ev.Kind == kind && (name == "" || ev.Domain.Name == name) {
				return ev
			}
		}
		select {
		case <-r.wake:
		case <-time.After(50 * time.Millisecond):
		case <-guard:
			t.Fatalf("no %s event for %q within a minute; saw %v", kind, name, kinds(r.since(from)))
		}
	}
}

// settled waits until h answers again after a disconnection that began after
// position from, and returns the last EventReconnected. A reconnection can be
// short-lived: a daemon told to stop may still accept a connection and answer
// one inventory before it exits, which the Hypervisor rightly reports as
// reconnected and then disconnected again.
func (r *recorder) settled(t *testing.T, ctx context.Context, h *libvirt.Hypervisor, from int) xenctl.Event {
	t.Helper()
	guard := time.After(time.Minute)
	for {
		var last xenctl.Event
		for _, ev := range r.since(from) {
			if ev.Kind == xenctl.EventReconnected || ev.Kind == xenctl.EventDisconnected {
				last = ev
			}
		}
		if last.Kind == xenctl.EventReconnected {
			_, err := h.Domains(ctx)
			if err == nil {
				t.Logf("connection events: %v", kinds(r.since(from)))
				return last
			}
			if !errors.Is(err, xenctl.ErrUnavailable) {
				t.Fatalf("Domains after reconnecting: %v", err)
			}
		}
		select {
		case <-r.wake:
		case <-time.After(50 * time.Millisecond):
		case <-guard:
			t.Fatalf("no lasting reconnection within a minute; saw %v", kinds(r.since(from)))
		}
	}
}

func kinds(evs []xenctl.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Kind.String()+":"+ev.Domain.Name)
	}
	return out
}

// consoleGrows waits until the guest's serial log grows past size, which
// proves the guest executes somewhere, and returns the new size.
func consoleGrows(t *testing.T, path string, size int64) int64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		data, err := os.ReadFile(path)
		if err == nil && int64(len(data)) > size && strings.Contains(string(data[size:]), "xenha-guest alive") {
			return int64(len(data))
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest console %s did not grow past %d bytes within a minute (%v)", path, size, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantOn(t *testing.T, ctx context.Context, h *libvirt.Hypervisor, host string, want xenctl.State) xenctl.Domain {
	t.Helper()
	d, err := h.Domain(ctx, guestName)
	if err != nil {
		t.Fatalf("on %s: Domain: %v", host, err)
	}
	if d.State != want {
		t.Fatalf("on %s: %s is %s (%s), want %s", host, guestName, d.State, d.Reason, want)
	}
	return d
}

func wantAbsentOrOff(t *testing.T, ctx context.Context, h *libvirt.Hypervisor, host string) {
	t.Helper()
	d, err := h.Domain(ctx, guestName)
	switch {
	case errors.Is(err, xenctl.ErrNoDomain):
	case err != nil:
		t.Fatalf("on %s: Domain: %v", host, err)
	case d.State.Active():
		t.Fatalf("on %s: %s is still %s: it runs on two hosts", host, guestName, d.State)
	}
}

// TestQEMUTwoHosts runs a real guest on two real libvirtd+QEMU hosts: boot,
// live migration both ways, destroy and restart elsewhere, a libvirtd restart
// and a hung libvirtd that must not read as a stopped VM, a guest that ignores
// ACPI, and a migration refused for an incompatible CPU.
func TestQEMUTwoHosts(t *testing.T) {
	needQEMUHosts(t)
	var a, b *qemuHost
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = startQEMUHost(t, "xenha-a", 1) }()
	go func() { defer wg.Done(); b = startQEMUHost(t, "xenha-b", 2) }()
	wg.Wait()
	if a == nil || b == nil || t.Failed() {
		t.FailNow()
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "guest.mb")
	console := filepath.Join(dir, "console.log")
	if err := os.WriteFile(kernel, guestKernel(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	ha, err := libvirt.Open(ctx, a.uri, libvirt.WithKeepAlive(1, 3))
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := libvirt.Open(ctx, b.uri, libvirt.WithKeepAlive(1, 3), libvirt.WithReconnectBackoff(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	evA, evB := record(t, ha), record(t, hb)
	xml := guestXML(guestName, guestUUID, kernel, console, "")

	// Host facts come from each daemon (each has its own UTS namespace).
	info, err := ha.HostInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Hostname != a.name || info.Hypervisor != "QEMU" || info.CPUs < 1 || info.MemoryKiB == 0 ||
		info.FreeMemoryKiB > info.MemoryKiB || !strings.HasPrefix(info.CPUXML, "<cpu>") {
		t.Errorf("HostInfo of a = %+v", info)
	}

	// Boot on a and see the guest print.
	if _, err := ha.Define(ctx, xml); err != nil {
		t.Fatal(err)
	}
	if err := ha.Start(ctx, guestName); err != nil {
		t.Fatalf("Start on a: %v\n%s", err, a.logs())
	}
	size := consoleGrows(t, console, 0)
	evA.waitFor(t, 0, xenctl.EventStarted, guestName)

	// Live-migrate a -> b, then b -> a.
	for i, hop := range []struct {
		from, to       *libvirt.Hypervisor
		fromHost, toTo *qemuHost
	}{{ha, hb, a, b}, {hb, ha, b, a}} {
		var reports int
		opts := xenctl.MigrateOptions{URI: hop.toTo.uri, Address: "tcp://127.0.0.1", Persist: true,
			BandwidthMiBs: 1000, MaxDowntime: 300 * time.Millisecond}
		if err := hop.from.Migrate(ctx, guestName, opts, func(xenctl.MigrationProgress) { reports++ }); err != nil {
			t.Fatalf("migration %d (%s -> %s): %v\n%s\n%s", i, hop.fromHost.name, hop.toTo.name, err, hop.fromHost.logs(), hop.toTo.logs())
		}
		d := wantOn(t, ctx, hop.to, hop.toTo.name, xenctl.StateRunning)
		if !d.Persistent || d.UUID != guestUUID {
			t.Errorf("after migration %d: %+v; want persistent with the fixed UUID", i, d)
		}
		wantAbsentOrOff(t, ctx, hop.from, hop.fromHost.name)
		if reports == 0 {
			t.Errorf("migration %d reported no progress", i)
		}
		size = consoleGrows(t, console, size) // it executes after the move
	}
	// A migration cancelled mid-copy (throttled to 1 MiB/s, so the 16 MiB
	// guest takes seconds) is aborted and leaves the guest where it was.
	cctx, ccancel := context.WithCancel(ctx)
	err = ha.Migrate(cctx, guestName, xenctl.MigrateOptions{URI: b.uri, Address: "tcp://127.0.0.1", Persist: true, BandwidthMiBs: 1},
		func(p xenctl.MigrationProgress) {
			if p.DataTotal > 0 {
				ccancel()
			}
		})
	ccancel()
	if !errors.Is(err, xenctl.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled migration = %v; want ErrUnavailable and context.Canceled", err)
	}
	wantOn(t, ctx, ha, a.name, xenctl.StateRunning)
	wantAbsentOrOff(t, ctx, hb, b.name)
	size = consoleGrows(t, console, size)

	stopped := evA.waitFor(t, 0, xenctl.EventStopped, guestName)
	if stopped.Domain.Reason != "migrated" {
		t.Errorf("a's first stop event has reason %q, want migrated", stopped.Domain.Reason)
	}
	evB.waitFor(t, 0, xenctl.EventStarted, guestName)

	// Fail over by hand: destroy on a, start on b from the same definition.
	if err := ha.Destroy(ctx, guestName); err != nil {
		t.Fatal(err)
	}
	if d := wantOn(t, ctx, ha, a.name, xenctl.StateShutoff); d.Reason != "destroyed" {
		t.Errorf("after Destroy reason %q, want destroyed", d.Reason)
	}
	if _, err := hb.Define(ctx, xml); err != nil {
		t.Fatal(err)
	}
	if err := hb.Start(ctx, guestName); err != nil {
		t.Fatal(err)
	}
	size = consoleGrows(t, console, size)

	// Restart b's libvirtd under the running guest: watchers see a
	// disconnection and a reconnection listing the guest running, never a stop.
	mark := evB.mark()
	b.restartLibvirtd(t)
	if _, err := hb.Domain(ctx, guestName); err != nil && !errors.Is(err, xenctl.ErrUnavailable) {
		t.Errorf("Domain while libvirtd restarts = %v; want success or ErrUnavailable", err)
	}
	rec := evB.settled(t, ctx, hb, mark)
	for _, ev := range evB.since(mark) {
		if ev.Domain.Name == guestName && (ev.Kind == xenctl.EventStopped || ev.Kind == xenctl.EventCrashed) {
			t.Errorf("libvirtd restart reported %s for %s", ev.Kind, guestName)
		}
	}
	if got := kinds(evB.since(mark)); !slices.Contains(got, "disconnected:") {
		t.Errorf("events across the restart %v; want a disconnection first", got)
	}
	i := slices.IndexFunc(rec.Inventory, func(d xenctl.Domain) bool { return d.Name == guestName })
	if i < 0 || rec.Inventory[i].State != xenctl.StateRunning {
		t.Errorf("reconnect inventory %+v; want %s running", rec.Inventory, guestName)
	}
	wantOn(t, ctx, hb, b.name, xenctl.StateRunning)
	size = consoleGrows(t, console, size)

	// A hung libvirtd: the call returns when its context ends, and says
	// unavailable, not stopped.
	pid := b.libvirtdPID(t)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	mark = evB.mark()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = hb.Domain(short, guestName)
	cancelShort()
	if !errors.Is(err, xenctl.ErrUnavailable) || errors.Is(err, xenctl.ErrNoDomain) {
		t.Errorf("Domain on a hung libvirtd = %v; want ErrUnavailable only", err)
	}
	// Keepalive (1 s, 3 probes) declares the hung daemon's connection dead;
	// once it thaws, the Hypervisor reconnects and finds the guest running.
	evB.waitFor(t, mark, xenctl.EventDisconnected, "")
	_ = syscall.Kill(pid, syscall.SIGCONT)
	rec = evB.settled(t, ctx, hb, mark)
	i = slices.IndexFunc(rec.Inventory, func(d xenctl.Domain) bool { return d.Name == guestName })
	if i < 0 || rec.Inventory[i].State != xenctl.StateRunning {
		t.Errorf("inventory after the hang %+v; want %s running", rec.Inventory, guestName)
	}
	for _, ev := range evB.since(mark) {
		if ev.Domain.Name == guestName && (ev.Kind == xenctl.EventStopped || ev.Kind == xenctl.EventCrashed) {
			t.Errorf("a hung libvirtd reported %s for %s", ev.Kind, guestName)
		}
	}

	// The guest has no ACPI: Shutdown waits out its grace, then destroys.
	forced, err := hb.Shutdown(ctx, guestName, 500*time.Millisecond)
	if err != nil || !forced {
		t.Errorf("Shutdown of a guest without ACPI = %v, %v; want forced", forced, err)
	}
	wantOn(t, ctx, hb, b.name, xenctl.StateShutoff)

	// A guest whose CPU needs avx512f, which TCG cannot provide: the
	// destination says so before any memory moves.
	cpuXML := `<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model><feature policy='require' name='avx512f'/></cpu>`
	if _, err := ha.Define(ctx, guestXML(cpuName, cpuUUID, kernel, filepath.Join(dir, "cpu.log"), cpuXML)); err != nil {
		t.Fatal(err)
	}
	if err := ha.Start(ctx, cpuName); err != nil {
		t.Fatalf("starting the avx512f guest on a: %v", err)
	}
	err = ha.Migrate(ctx, cpuName, xenctl.MigrateOptions{URI: b.uri, Address: "tcp://127.0.0.1"}, nil)
	if !errors.Is(err, xenctl.ErrCPUIncompatible) || !strings.Contains(err.Error(), "avx512f") {
		t.Errorf("migrating the avx512f guest = %v; want ErrCPUIncompatible naming avx512f", err)
	}
	if d, err := ha.Domain(ctx, cpuName); err != nil || d.State != xenctl.StateRunning {
		t.Errorf("after the refused migration: %+v, %v; want running on a", d, err)
	}
	if _, err := hb.Domain(ctx, cpuName); !errors.Is(err, xenctl.ErrNoDomain) {
		t.Errorf("after the refused migration b has %s: %v", cpuName, err)
	}
	for _, h := range []*libvirt.Hypervisor{ha, hb} {
		for _, n := range []string{guestName, cpuName} {
			_ = h.Destroy(ctx, n)
		}
	}
}
