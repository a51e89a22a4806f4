package xenctltest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

func TestConformance(t *testing.T) {
	xenctltest.Run(t, func(t *testing.T) xenctl.Hypervisor { return xenctltest.New("h1") })
}

const (
	uuid1 = "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
	uuid2 = "5eea22b3-1d52-d8f3-2516-782e98ab3fa1"
)

func mustDefineStart(t *testing.T, h *xenctltest.Host, name, uuid string) {
	t.Helper()
	ctx := t.Context()
	if _, err := h.Define(ctx, xenctltest.DomainXML(name, uuid, 1<<20, 2, "52:54:00:00:00:01")); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
}

func TestWorldSeesDoubleRun(t *testing.T) {
	w := xenctltest.NewWorld()
	a := xenctltest.New("a", xenctltest.WithWorld(w))
	b := xenctltest.New("b", xenctltest.WithWorld(w))
	mustDefineStart(t, a, "vm1", uuid1)
	if got := w.Running("vm1"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Running(vm1) = %v, want [a]", got)
	}
	if got := w.DoubleRunners(); len(got) != 0 {
		t.Fatalf("DoubleRunners = %v, want none", got)
	}
	// The mistake xenha exists to prevent: start the same VM elsewhere
	// without fencing the first host.
	mustDefineStart(t, b, "vm1", uuid1)
	if got := w.Running(uuid1); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Running(uuid) = %v, want [a b]", got)
	}
	if got := w.DoubleRunners(); !slices.Equal(got, []string{"vm1"}) {
		t.Fatalf("DoubleRunners = %v, want [vm1]", got)
	}
}

func TestMigrate(t *testing.T) {
	ctx := t.Context()
	w := xenctltest.NewWorld()
	a := xenctltest.New("a", xenctltest.WithWorld(w))
	b := xenctltest.New("b", xenctltest.WithWorld(w))
	mustDefineStart(t, a, "vm1", uuid1)

	var seen []xenctl.MigrationProgress
	err := a.Migrate(ctx, "vm1", xenctl.MigrateOptions{URI: b.URI(), Persist: true}, func(p xenctl.MigrationProgress) {
		seen = append(seen, p)
		// The copy is under way: the domain must still run only on a.
		if got := w.Running("vm1"); !slices.Equal(got, []string{"a"}) && p.DataProcessed == 0 {
			t.Errorf("during migration Running = %v, want [a]", got)
		}
	})
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if got := w.Running("vm1"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after migration Running = %v, want [b]", got)
	}
	if len(seen) < 2 || seen[len(seen)-1].DataProcessed != seen[len(seen)-1].DataTotal {
		t.Errorf("progress = %+v, want at least a start and a finished report", seen)
	}
	d, err := b.Domain(ctx, "vm1")
	if err != nil || d.State != xenctl.StateRunning || d.Reason != "migrated" || !d.Persistent {
		t.Fatalf("on b: %+v, %v; want running (migrated), persistent", d, err)
	}
	if _, err := a.Domain(ctx, "vm1"); !errors.Is(err, xenctl.ErrNoDomain) {
		t.Fatalf("on a after persistent migration: %v, want ErrNoDomain", err)
	}

	// Back without Persist: transient on a, definition stays on b, shut off.
	if err := b.Migrate(ctx, "vm1", xenctl.MigrateOptions{URI: "a"}, nil); err != nil {
		t.Fatalf("Migrate back: %v", err)
	}
	da, _ := a.Domain(ctx, "vm1")
	db, _ := b.Domain(ctx, "vm1")
	if da.State != xenctl.StateRunning || da.Persistent || db.State != xenctl.StateShutoff || db.Reason != "migrated" {
		t.Fatalf("after migrating back: a %+v, b %+v", da, db)
	}
}

func TestMigrateRefusals(t *testing.T) {
	ctx := t.Context()
	w := xenctltest.NewWorld()
	a := xenctltest.New("a", xenctltest.WithWorld(w))
	old := xenctltest.DefaultHostInfo
	old.CPUModel = "Westmere"
	_ = xenctltest.New("b", xenctltest.WithWorld(w), xenctltest.WithHostInfo(old))
	c := xenctltest.New("c", xenctltest.WithWorld(w), xenctltest.WithCPUFeatures("sse4.2"))
	xml := `<domain type='test'><name>vm1</name><uuid>` + uuid1 + `</uuid><memory>65536</memory>
	  <cpu mode='custom'><model>Skylake-Server-IBRS</model><feature policy='require' name='avx512f'/></cpu></domain>`
	if _, err := a.Define(ctx, xml); err != nil {
		t.Fatal(err)
	}
	if err := a.Migrate(ctx, "vm1", xenctl.MigrateOptions{URI: "b"}, nil); err == nil {
		t.Fatal("migrating a stopped domain succeeded")
	}
	if err := a.Start(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uri  string
		want error
	}{
		{"b", xenctl.ErrCPUIncompatible},
		{"c", xenctl.ErrCPUIncompatible},
		{"nowhere", xenctl.ErrUnavailable},
	} {
		err := a.Migrate(ctx, "vm1", xenctl.MigrateOptions{URI: tc.uri}, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("Migrate to %s = %v, want %v", tc.uri, err, tc.want)
		}
	}
	c.StopDaemon()
	if err := a.Migrate(ctx, "vm1", xenctl.MigrateOptions{URI: "c"}, nil); !errors.Is(err, xenctl.ErrUnavailable) {
		t.Errorf("Migrate to a host whose daemon is down = %v, want ErrUnavailable", err)
	}
	if got := w.Running("vm1"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after refused migrations Running = %v, want [a]", got)
	}
}

func TestMigrateCancelled(t *testing.T) {
	w := xenctltest.NewWorld()
	a := xenctltest.New("a", xenctltest.WithWorld(w))
	b := xenctltest.New("b", xenctltest.WithWorld(w))
	mustDefineStart(t, a, "vm1", uuid1)
	a.Inject(xenctltest.Fault{Method: xenctltest.MethodMigrate, Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err := a.Migrate(ctx, "vm1", xenctl.MigrateOptions{URI: b.URI()}, nil)
	if !errors.Is(err, xenctl.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled Migrate = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if got := w.Running("vm1"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after cancelled migration Running = %v, want [a]", got)
	}
}

func TestFaults(t *testing.T) {
	ctx := t.Context()
	h := xenctltest.New("h")
	mustDefineStart(t, h, "vm1", uuid1)
	boom := errors.New("boom")
	h.Inject(xenctltest.Fault{Method: xenctltest.MethodDestroy, Domain: "vm1", Err: boom, Times: 2})
	for i := range 2 {
		if err := h.Destroy(ctx, "vm1"); !errors.Is(err, boom) {
			t.Fatalf("Destroy #%d = %v, want boom", i+1, err)
		}
	}
	if got, _ := h.Domain(ctx, "vm1"); got.State != xenctl.StateRunning {
		t.Fatalf("a failed Destroy stopped the domain: %+v", got)
	}
	if err := h.Destroy(ctx, "vm1"); err != nil {
		t.Fatalf("third Destroy = %v, want nil once the fault is used up", err)
	}

	remove := h.Inject(xenctltest.Fault{Method: xenctltest.MethodDomains, Err: boom})
	for range 3 {
		if _, err := h.Domains(ctx); !errors.Is(err, boom) {
			t.Fatalf("Domains = %v, want boom always", err)
		}
	}
	remove()
	if _, err := h.Domains(ctx); err != nil {
		t.Fatalf("Domains after removing the fault: %v", err)
	}

	// Fault on another domain does not apply.
	h.Inject(xenctltest.Fault{Domain: "other", Err: boom})
	if err := h.Start(ctx, "vm1"); err != nil {
		t.Fatalf("Start vm1 with a fault on another domain: %v", err)
	}
	h.ClearFaults()

	calls := h.Calls()
	if h.CallCount(xenctltest.MethodDestroy) != 3 || calls[len(calls)-1].Method != xenctltest.MethodStart {
		t.Errorf("call log = %+v", calls)
	}
}

func TestHang(t *testing.T) {
	h := xenctltest.New("h")
	mustDefineStart(t, h, "vm1", uuid1)
	h.Inject(xenctltest.Fault{Hang: true})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	d, err := h.Domain(ctx, "vm1")
	if !errors.Is(err, xenctl.ErrUnavailable) || errors.Is(err, xenctl.ErrNoDomain) {
		t.Fatalf("Domain on a hung daemon = %+v, %v; want ErrUnavailable only", d, err)
	}
	if got := h.World().Running("vm1"); !slices.Equal(got, []string{"h"}) {
		t.Fatalf("a hung daemon stopped the guest: Running = %v", got)
	}
}

func TestDelay(t *testing.T) {
	h := xenctltest.New("h")
	mustDefineStart(t, h, "vm1", uuid1)
	h.Inject(xenctltest.Fault{Method: xenctltest.MethodDomain, Delay: time.Millisecond, Times: 1})
	if _, err := h.Domain(t.Context(), "vm1"); err != nil {
		t.Fatalf("delayed Domain: %v", err)
	}
	if c := h.Calls(); c[len(c)-1].Err != nil {
		t.Fatalf("delayed call logged as failed: %+v", c[len(c)-1])
	}
}

func TestDaemonRestart(t *testing.T) {
	ctx := t.Context()
	h := xenctltest.New("h")
	events, err := h.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustDefineStart(t, h, "vm1", uuid1)
	h.StopDaemon()
	if _, err := h.Domains(ctx); !errors.Is(err, xenctl.ErrUnavailable) {
		t.Fatalf("Domains with the daemon down = %v, want ErrUnavailable", err)
	}
	if got := h.World().Running("vm1"); !slices.Equal(got, []string{"h"}) {
		t.Fatalf("guest stopped with its daemon: Running = %v", got)
	}
	h.StartDaemon()

	var kinds []xenctl.EventKind
	var last xenctl.Event
	for ev := range events {
		kinds = append(kinds, ev.Kind)
		last = ev
		if ev.Kind == xenctl.EventReconnected {
			break
		}
	}
	want := []xenctl.EventKind{xenctl.EventDefined, xenctl.EventStarted, xenctl.EventDisconnected, xenctl.EventReconnected}
	if !slices.Equal(kinds, want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	if len(last.Inventory) != 1 || last.Inventory[0].State != xenctl.StateRunning {
		t.Fatalf("reconnect inventory %+v, want vm1 running", last.Inventory)
	}
}

func TestPowerOff(t *testing.T) {
	ctx := t.Context()
	h := xenctltest.New("h")
	mustDefineStart(t, h, "vm1", uuid1)
	h.PowerOff()
	if got := h.World().Running("vm1"); len(got) != 0 {
		t.Fatalf("after power off Running = %v", got)
	}
	if _, err := h.Domains(ctx); !errors.Is(err, xenctl.ErrUnavailable) {
		t.Fatalf("Domains on a powered-off host = %v, want ErrUnavailable", err)
	}
	h.StartDaemon() // no effect without power
	if _, err := h.Domains(ctx); !errors.Is(err, xenctl.ErrUnavailable) {
		t.Fatalf("daemon started without power: %v", err)
	}
	h.PowerOn()
	d, err := h.Domain(ctx, "vm1")
	if err != nil || d.State != xenctl.StateShutoff {
		t.Fatalf("after power on %+v, %v; want vm1 shut off", d, err)
	}
}

func TestCrashGuest(t *testing.T) {
	ctx := t.Context()
	h := xenctltest.New("h")
	events, err := h.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustDefineStart(t, h, "vm1", uuid1)
	if err := h.CrashGuest("vm1"); err != nil {
		t.Fatal(err)
	}
	for ev := range events {
		if ev.Kind == xenctl.EventCrashed {
			if ev.Domain.State != xenctl.StateCrashed {
				t.Fatalf("crash event state %s", ev.Domain.State)
			}
			break
		}
	}
	if got := h.World().Running("vm1"); len(got) != 0 {
		t.Fatalf("a crashed guest counts as running: %v", got)
	}
	if err := h.Start(ctx, "vm1"); err != nil {
		t.Fatalf("restarting a crashed guest: %v", err)
	}
	if err := h.CrashGuest("nope"); !errors.Is(err, xenctl.ErrNoDomain) {
		t.Fatalf("CrashGuest(unknown) = %v", err)
	}
}

func TestShutdownDelay(t *testing.T) {
	ctx := t.Context()
	h := xenctltest.New("h")
	mustDefineStart(t, h, "vm1", uuid1)
	if err := h.SetGuest("vm1", xenctltest.Guest{ShutdownDelay: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	forced, err := h.Shutdown(ctx, "vm1", time.Hour)
	if err != nil || forced {
		t.Fatalf("Shutdown of a slow but willing guest = %v, %v; want clean", forced, err)
	}
	d, _ := h.Domain(ctx, "vm1")
	if d.State != xenctl.StateShutoff || d.Reason != "shutdown" {
		t.Fatalf("after Shutdown %+v", d)
	}

	// A guest deaf to ACPI and a caller that gives up: the guest keeps running.
	if err := h.Start(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	if err := h.SetGuest("vm1", xenctltest.Guest{IgnoreACPI: true}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	if _, err := h.Shutdown(cctx, "vm1", time.Hour); !errors.Is(err, xenctl.ErrUnavailable) {
		t.Fatalf("Shutdown cut short = %v, want ErrUnavailable", err)
	}
	if d, _ := h.Domain(ctx, "vm1"); d.State != xenctl.StateRunning {
		t.Fatalf("after abandoned Shutdown %+v, want running", d)
	}
}

func TestCapacity(t *testing.T) {
	ctx := t.Context()
	info := xenctltest.DefaultHostInfo
	info.MemoryKiB = 1 << 20
	h := xenctltest.New("h", xenctltest.WithHostInfo(info))
	mustDefineStart(t, h, "vm1", uuid1)
	got, err := h.HostInfo(ctx)
	if err != nil || got.FreeMemoryKiB != 0 || got.Hostname != "h" {
		t.Fatalf("HostInfo = %+v, %v; want 0 free, hostname h", got, err)
	}
	if _, err := h.Define(ctx, xenctltest.DomainXML("vm2", uuid2, 1024, 1)); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx, "vm2"); !errors.Is(err, xenctltest.ErrNoMemory) {
		t.Fatalf("Start beyond capacity = %v, want ErrNoMemory", err)
	}
}

func TestCloseEndsEvents(t *testing.T) {
	h := xenctltest.New("h")
	events, err := h.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	for range events {
	}
	if _, err := h.Domains(t.Context()); !errors.Is(err, xenctl.ErrUnavailable) {
		t.Fatalf("Domains after Close = %v, want ErrUnavailable", err)
	}
}

// TestConcurrent hammers two hosts of one world from many goroutines with
// random operations and migrations; run with -race it checks the locking, and
// it checks that migration never leaves a domain active on both hosts.
func TestConcurrent(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ctx := t.Context()
	w := xenctltest.NewWorld()
	hosts := []*xenctltest.Host{xenctltest.New("a", xenctltest.WithWorld(w)), xenctltest.New("b", xenctltest.WithWorld(w))}
	const vms = 4
	for i := range vms {
		u := fmt.Sprintf("00000000-0000-0000-0000-%012d", i)
		mustDefineStart(t, hosts[0], fmt.Sprintf("vm%d", i), u)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	violations := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if d := w.DoubleRunners(); len(d) > 0 {
				select {
				case violations <- fmt.Sprint(d):
				default:
				}
			}
		}
	}()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for range 200 {
				h := hosts[r.IntN(2)]
				name := fmt.Sprintf("vm%d", r.IntN(vms))
				switch r.IntN(5) {
				case 0:
					_, _ = h.Domains(ctx)
				case 1:
					_ = h.Migrate(ctx, name, xenctl.MigrateOptions{URI: hosts[0].URI(), Persist: true}, nil)
				case 2:
					_ = h.Migrate(ctx, name, xenctl.MigrateOptions{URI: hosts[1].URI(), Persist: true}, nil)
				case 3:
					_, _ = h.Domain(ctx, name)
				case 4:
					_, _ = h.HostInfo(ctx)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	select {
	case v := <-violations:
		t.Fatalf("seed %d: domains %s ran on two hosts during migration", seed, v)
	default:
	}
	for i := range vms {
		if got := w.Running(fmt.Sprintf("vm%d", i)); len(got) != 1 {
			t.Errorf("seed %d: vm%d runs on %v, want exactly one host", seed, i, got)
		}
	}
}

func TestPausedIsNotRunning(t *testing.T) {
	ctx := t.Context()
	w := xenctltest.NewWorld()
	a := xenctltest.New("a", xenctltest.WithWorld(w))
	b := xenctltest.New("b", xenctltest.WithWorld(w))
	mustDefineStart(t, a, "vm1", uuid1)
	if err := a.Suspend(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	// Isolation paused vm1 on a; the cluster restarts it on b.
	mustDefineStart(t, b, "vm1", uuid1)
	if got := w.Running("vm1"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("Running = %v, want [b]: a paused domain executes nothing", got)
	}
	if got := w.Active("vm1"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Active = %v, want [a b]", got)
	}
	if got := w.DoubleRunners(); len(got) != 0 {
		t.Fatalf("DoubleRunners = %v, want none", got)
	}
	if err := a.Resume(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	if got := w.DoubleRunners(); !slices.Equal(got, []string{"vm1"}) {
		t.Fatalf("after resuming on a, DoubleRunners = %v, want [vm1]", got)
	}
	if err := b.Suspend(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Migrate(ctx, "vm1", xenctl.MigrateOptions{URI: "a"}, nil); !errors.Is(err, xenctl.ErrConflict) {
		t.Fatalf("migrating onto a host where it is active = %v, want ErrConflict", err)
	}
}
