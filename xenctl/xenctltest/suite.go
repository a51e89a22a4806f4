package xenctltest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/xenctl"
)

// GuestController is implemented by hypervisors whose tests can make a guest
// ignore ACPI (the fake's Host does). Run uses it, when present, to check that
// Shutdown destroys a guest that does not stop within its grace.
type GuestController interface {
	SetGuest(name string, g Guest) error
}

// Run checks h against the xenctl.Hypervisor contract. newHypervisor is called
// once per subtest and should return a hypervisor for a host with no domains
// that the suite does not know about (other domains are tolerated, but must not
// share the suite's names); the suite closes it and removes what it defined.
// Domains are defined with DomainXML, so the hypervisor must accept type
// 'test' definitions, or newHypervisor may wrap it to rewrite them.
func Run(t *testing.T, newHypervisor func(t *testing.T) xenctl.Hypervisor) {
	t.Run("Define", func(t *testing.T) { testDefine(t, newHypervisor(t)) })
	t.Run("DefineIdempotent", func(t *testing.T) { testDefineIdempotent(t, newHypervisor(t)) })
	t.Run("DefineInvalid", func(t *testing.T) { testDefineInvalid(t, newHypervisor(t)) })
	t.Run("DefineConflict", func(t *testing.T) { testDefineConflict(t, newHypervisor(t)) })
	t.Run("Start", func(t *testing.T) { testStart(t, newHypervisor(t)) })
	t.Run("Domains", func(t *testing.T) { testDomains(t, newHypervisor(t)) })
	t.Run("Shutdown", func(t *testing.T) { testShutdown(t, newHypervisor(t)) })
	t.Run("ShutdownIgnoringACPI", func(t *testing.T) { testShutdownIgnoringACPI(t, newHypervisor(t)) })
	t.Run("Destroy", func(t *testing.T) { testDestroy(t, newHypervisor(t)) })
	t.Run("Undefine", func(t *testing.T) { testUndefine(t, newHypervisor(t)) })
	t.Run("NoDomain", func(t *testing.T) { testNoDomain(t, newHypervisor(t)) })
	t.Run("HostInfo", func(t *testing.T) { testHostInfo(t, newHypervisor(t)) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelled(t, newHypervisor(t)) })
	t.Run("Events", func(t *testing.T) { testEvents(t, newHypervisor(t)) })
	t.Run("SuspendResume", func(t *testing.T) { testSuspendResume(t, newHypervisor(t)) })
}

// callTimeout bounds each suite call, so that a hung implementation fails the
// test with a message instead of stalling the run. It guards; it measures
// nothing.
const callTimeout = time.Minute

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testDomain is one domain the suite owns.
type testDomain struct {
	name, uuid string
	memKiB     uint64
	vcpus      int
}

// newTestDomain names a domain after the test, so that suites run against a
// shared driver state (libvirt's test:///default) do not collide, and gives it
// a UUID derived from the name.
func newTestDomain(t *testing.T, i int) testDomain {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", t.Name(), i)))
	u := fmt.Sprintf("%x", sum[:16])
	u = u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32]
	return testDomain{name: fmt.Sprintf("xt-%x-%d", sum[16:20], i), uuid: u, memKiB: 65536, vcpus: 1}
}

func (d testDomain) xml() string {
	return DomainXML(d.name, d.uuid, d.memKiB, d.vcpus, macFor(d.uuid))
}

func macFor(uuid string) string {
	h := strings.ReplaceAll(uuid, "-", "")
	return "52:54:00:" + h[0:2] + ":" + h[2:4] + ":" + h[4:6]
}

// define defines d and arranges for it to be removed when the test ends.
func define(t *testing.T, h xenctl.Hypervisor, d testDomain) xenctl.Domain {
	t.Helper()
	got, err := h.Define(ctxFor(t), d.xml())
	if err != nil {
		t.Fatalf("Define %s: %v", d.name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		_ = h.Destroy(ctx, d.name)
		_ = h.Undefine(ctx, d.name)
	})
	return got
}

func closeAtEnd(t *testing.T, h xenctl.Hypervisor) {
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

func wantState(t *testing.T, h xenctl.Hypervisor, name string, want xenctl.State) xenctl.Domain {
	t.Helper()
	got, err := h.Domain(ctxFor(t), name)
	if err != nil {
		t.Fatalf("Domain %s: %v", name, err)
	}
	if got.State != want {
		t.Fatalf("Domain %s: state %s (reason %q), want %s", name, got.State, got.Reason, want)
	}
	return got
}

func testDefine(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	d := newTestDomain(t, 0)
	d.uuid = strings.ToUpper(d.uuid)
	d.memKiB, d.vcpus = 131072, 2
	got := define(t, h, d)
	want := xenctl.Domain{Name: d.name, UUID: strings.ToLower(d.uuid), State: xenctl.StateShutoff,
		MemoryKiB: 131072, VCPUs: 2, Persistent: true}
	got.Reason = ""
	if got != want {
		t.Errorf("Define returned %+v, want %+v", got, want)
	}
	again := wantState(t, h, d.name, xenctl.StateShutoff)
	again.Reason = ""
	if again != want {
		t.Errorf("Domain returned %+v, want %+v", again, want)
	}
}

func testDefineIdempotent(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	ctx := ctxFor(t)
	d := newTestDomain(t, 0)
	define(t, h, d)
	if _, err := h.Define(ctx, d.xml()); err != nil {
		t.Fatalf("defining %s a second time: %v; Define must be idempotent", d.name, err)
	}
	d.memKiB = 98304
	got, err := h.Define(ctx, d.xml())
	if err != nil {
		t.Fatalf("redefining %s with more memory: %v", d.name, err)
	}
	if got.MemoryKiB != 98304 {
		t.Errorf("after redefinition %s has %d KiB, want 98304", d.name, got.MemoryKiB)
	}
	if n := count(t, h, d.name); n != 1 {
		t.Errorf("Domains lists %s %d times after three defines, want once", d.name, n)
	}
}

func count(t *testing.T, h xenctl.Hypervisor, name string) int {
	t.Helper()
	all, err := h.Domains(ctxFor(t))
	if err != nil {
		t.Fatalf("Domains: %v", err)
	}
	n := 0
	for _, d := range all {
		if d.Name == name {
			n++
		}
	}
	return n
}

func testDefineInvalid(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	d := newTestDomain(t, 0)
	noUUID := strings.Replace(d.xml(), "<uuid>"+d.uuid+"</uuid>", "", 1)
	badUUID := strings.Replace(d.xml(), d.uuid, "not-a-uuid", 1)
	noName := strings.Replace(d.xml(), "<name>"+d.name+"</name>", "", 1)
	for what, xml := range map[string]string{
		"empty":     "",
		"malformed": "<domain type='test'><name>" + d.name + "</name",
		"not XML":   "this is not a domain",
		"no UUID":   noUUID,
		"bad UUID":  badUUID,
		"no name":   noName,
	} {
		_, err := h.Define(ctxFor(t), xml)
		if !errors.Is(err, xenctl.ErrInvalidDomain) {
			t.Errorf("Define(%s) = %v, want an error wrapping ErrInvalidDomain", what, err)
		}
	}
	if n := count(t, h, d.name); n != 0 {
		t.Errorf("invalid definitions left %d domains named %s", n, d.name)
	}
}

func testDefineConflict(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	ctx := ctxFor(t)
	a, b := newTestDomain(t, 0), newTestDomain(t, 1)
	define(t, h, a)
	sameName := b
	sameName.name = a.name
	if _, err := h.Define(ctx, sameName.xml()); !errors.Is(err, xenctl.ErrConflict) {
		t.Errorf("defining %s with another UUID = %v, want ErrConflict", a.name, err)
	}
	sameUUID := b
	sameUUID.uuid = a.uuid
	if _, err := h.Define(ctx, sameUUID.xml()); !errors.Is(err, xenctl.ErrConflict) {
		t.Errorf("defining %s with the UUID of %s = %v, want ErrConflict", b.name, a.name, err)
		_ = h.Undefine(ctx, b.name)
	}
	got := wantState(t, h, a.name, xenctl.StateShutoff)
	if got.UUID != a.uuid {
		t.Errorf("after conflicts %s has UUID %s, want %s unchanged", a.name, got.UUID, a.uuid)
	}
}

func testStart(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	ctx := ctxFor(t)
	d := newTestDomain(t, 0)
	define(t, h, d)
	if err := h.Start(ctx, d.name); err != nil {
		t.Fatalf("Start %s: %v", d.name, err)
	}
	wantState(t, h, d.name, xenctl.StateRunning)
	if err := h.Start(ctx, d.name); err != nil {
		t.Fatalf("Start on running %s: %v; starting a running domain must succeed", d.name, err)
	}
	wantState(t, h, d.name, xenctl.StateRunning)
}

func testDomains(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	ctx := ctxFor(t)
	var ds []testDomain
	for i := range 3 {
		ds = append(ds, newTestDomain(t, i))
		define(t, h, ds[i])
	}
	if err := h.Start(ctx, ds[1].name); err != nil {
		t.Fatal(err)
	}
	all, err := h.Domains(ctx)
	if err != nil {
		t.Fatalf("Domains: %v", err)
	}
	seen := map[string]xenctl.Domain{}
	for _, d := range all {
		if _, dup := seen[d.Name]; dup {
			t.Errorf("Domains lists %s twice", d.Name)
		}
		seen[d.Name] = d
	}
	for i, d := range ds {
		got, ok := seen[d.name]
		want := xenctl.StateShutoff
		if i == 1 {
			want = xenctl.StateRunning
		}
		switch {
		case !ok:
			t.Errorf("Domains does not list %s", d.name)
		case got.State != want || got.UUID != d.uuid || got.MemoryKiB != d.memKiB || got.VCPUs != d.vcpus || !got.Persistent:
			t.Errorf("Domains lists %+v, want %s %s %s %d KiB %d vCPUs persistent", got, d.name, d.uuid, want, d.memKiB, d.vcpus)
		}
	}
}

func testShutdown(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	ctx := ctxFor(t)
	d := newTestDomain(t, 0)
	define(t, h, d)
	if err := h.Start(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Shutdown(ctx, d.name, 10*time.Second); err != nil {
		t.Fatalf("Shutdown %s: %v", d.name, err)
	}
	wantState(t, h, d.name, xenctl.StateShutoff)
	forced, err := h.Shutdown(ctx, d.name, time.Second)
	if err != nil || forced {
		t.Fatalf("Shutdown on stopped %s = %v, %v; want false, nil", d.name, forced, err)
	}
}

func testShutdownIgnoringACPI(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	gc, ok := h.(GuestController)
	if !ok {
		t.Skipf("%T cannot make a guest ignore ACPI (does not implement GuestController)", h)
	}
	ctx := ctxFor(t)
	d := newTestDomain(t, 0)
	define(t, h, d)
	if err := h.Start(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	if err := gc.SetGuest(d.name, Guest{IgnoreACPI: true}); err != nil {
		t.Fatal(err)
	}
	forced, err := h.Shutdown(ctx, d.name, 50*time.Millisecond)
	if err != nil || !forced {
		t.Fatalf("Shutdown of %s, which ignores ACPI = %v, %v; want forced, nil", d.name, forced, err)
	}
	got := wantState(t, h, d.name, xenctl.StateShutoff)
	if got.Reason != "destroyed" {
		t.Errorf("%s stopped with reason %q, want destroyed", d.name, got.Reason)
	}
}

func testDestroy(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	ctx := ctxFor(t)
	d := newTestDomain(t, 0)
	define(t, h, d)
	if err := h.Destroy(ctx, d.name); err != nil {
		t.Fatalf("Destroy of defined, stopped %s: %v; want nil", d.name, err)
	}
	if err := h.Start(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	if err := h.Destroy(ctx, d.name); err != nil {
		t.Fatalf("Destroy %s: %v", d.name, err)
	}
	got := wantState(t, h, d.name, xenctl.StateShutoff)
	if got.Reason != "destroyed" {
		t.Errorf("%s stopped with reason %q, want destroyed", d.name, got.Reason)
	}
	if err := h.Destroy(ctx, d.name); err != nil {
		t.Fatalf("second Destroy %s: %v; want nil", d.name, err)
	}
	if err := h.Start(ctx, d.name); err != nil {
		t.Fatalf("Start after Destroy %s: %v", d.name, err)
	}
	wantState(t, h, d.name, xenctl.StateRunning)
}

func testUndefine(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	ctx := ctxFor(t)
	d := newTestDomain(t, 0)
	define(t, h, d)
	if err := h.Undefine(ctx, d.name); err != nil {
		t.Fatalf("Undefine %s: %v", d.name, err)
	}
	if _, err := h.Domain(ctx, d.name); !errors.Is(err, xenctl.ErrNoDomain) {
		t.Errorf("Domain after Undefine %s = %v, want ErrNoDomain", d.name, err)
	}
	if n := count(t, h, d.name); n != 0 {
		t.Errorf("Domains still lists %s after Undefine", d.name)
	}
	if _, err := h.Define(ctx, d.xml()); err != nil {
		t.Fatalf("Define after Undefine %s: %v", d.name, err)
	}
}

func testNoDomain(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	ctx := ctxFor(t)
	name := newTestDomain(t, 0).name
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, xenctl.ErrNoDomain) {
			t.Errorf("%s of unknown domain %s = %v, want ErrNoDomain", op, name, err)
		}
		if errors.Is(err, xenctl.ErrUnavailable) {
			t.Errorf("%s of unknown domain %s also wraps ErrUnavailable: %v", op, name, err)
		}
	}
	_, err := h.Domain(ctx, name)
	check("Domain", err)
	check("Start", h.Start(ctx, name))
	_, err = h.Shutdown(ctx, name, time.Second)
	check("Shutdown", err)
	check("Destroy", h.Destroy(ctx, name))
	check("Undefine", h.Undefine(ctx, name))
}

func testHostInfo(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	info, err := h.HostInfo(ctxFor(t))
	if err != nil {
		t.Fatalf("HostInfo: %v", err)
	}
	if info.MemoryKiB == 0 || info.CPUs <= 0 || info.Hypervisor == "" || info.Hostname == "" {
		t.Errorf("HostInfo = %+v; want memory, CPUs, hypervisor and hostname", info)
	}
	if info.FreeMemoryKiB > info.MemoryKiB {
		t.Errorf("HostInfo: free memory %d KiB exceeds total %d KiB", info.FreeMemoryKiB, info.MemoryKiB)
	}
}

func testCancelled(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	d := newTestDomain(t, 0)
	define(t, h, d)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, xenctl.ErrUnavailable) {
			t.Errorf("%s with a cancelled context = %v, want an error wrapping ErrUnavailable", op, err)
		}
	}
	_, err := h.Domains(ctx)
	check("Domains", err)
	_, err = h.Domain(ctx, d.name)
	check("Domain", err)
	_, err = h.Define(ctx, d.xml())
	check("Define", err)
	check("Start", h.Start(ctx, d.name))
	_, err = h.Shutdown(ctx, d.name, time.Second)
	check("Shutdown", err)
	check("Destroy", h.Destroy(ctx, d.name))
	check("Undefine", h.Undefine(ctx, d.name))
	_, err = h.HostInfo(ctx)
	check("HostInfo", err)
	if w, ok := h.(xenctl.Watcher); ok {
		_, err = w.Events(ctx)
		check("Events", err)
	}
	// A cancelled call must not have acted.
	wantState(t, h, d.name, xenctl.StateShutoff)
}

func testEvents(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	w, ok := h.(xenctl.Watcher)
	if !ok {
		t.Skipf("%T does not implement xenctl.Watcher", h)
	}
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	events, err := w.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	d := newTestDomain(t, 0)
	define(t, h, d)
	expect(t, events, d.name, xenctl.EventDefined, xenctl.StateShutoff)
	if err := h.Start(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	expect(t, events, d.name, xenctl.EventStarted, xenctl.StateRunning)
	if err := h.Destroy(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	expect(t, events, d.name, xenctl.EventStopped, xenctl.StateShutoff)
	if err := h.Undefine(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	expect(t, events, d.name, xenctl.EventUndefined, xenctl.StateUnknown)

	cancel()
	guard := time.NewTimer(callTimeout)
	defer guard.Stop()
	for {
		select {
		case _, open := <-events:
			if !open {
				return
			}
		case <-guard.C:
			t.Fatal("event channel still open a minute after its context ended")
		}
	}
}

// expect reads events until one of kind arrives for name, skipping others (an
// implementation may report more than the suite asks for). State is checked
// unless want is StateUnknown.
func expect(t *testing.T, events <-chan xenctl.Event, name string, kind xenctl.EventKind, want xenctl.State) {
	t.Helper()
	guard := time.NewTimer(callTimeout)
	defer guard.Stop()
	var skipped []string
	for {
		select {
		case ev, open := <-events:
			if !open {
				t.Fatalf("event channel closed while waiting for %s %s (skipped %v)", kind, name, skipped)
			}
			if ev.Domain.Name != name || ev.Kind != kind {
				skipped = append(skipped, ev.Kind.String()+" "+ev.Domain.Name)
				continue
			}
			if want != xenctl.StateUnknown && ev.Domain.State != want {
				t.Errorf("%s event for %s carries state %s, want %s", kind, name, ev.Domain.State, want)
			}
			return
		case <-guard.C:
			t.Fatalf("no %s event for %s within a minute (skipped %v)", kind, name, skipped)
		}
	}
}

func testSuspendResume(t *testing.T, h xenctl.Hypervisor) {
	closeAtEnd(t, h)
	p, ok := h.(xenctl.Pauser)
	if !ok {
		t.Skipf("%T does not implement xenctl.Pauser", h)
	}
	ctx := ctxFor(t)
	d := newTestDomain(t, 0)
	define(t, h, d)
	if err := p.Suspend(ctx, d.name); err == nil {
		t.Errorf("Suspend of shut-off %s succeeded; want an error", d.name)
	}
	wantState(t, h, d.name, xenctl.StateShutoff)
	if err := h.Start(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := p.Suspend(ctx, d.name); err != nil {
			t.Fatalf("Suspend #%d of %s: %v; suspending a paused domain must succeed", i+1, d.name, err)
		}
		if got := wantState(t, h, d.name, xenctl.StatePaused); got.State.Executing() || !got.State.Active() {
			t.Errorf("paused %s: Executing %v, Active %v; want false, true", d.name, got.State.Executing(), got.State.Active())
		}
	}
	for i := range 2 {
		if err := p.Resume(ctx, d.name); err != nil {
			t.Fatalf("Resume #%d of %s: %v; resuming a running domain must succeed", i+1, d.name, err)
		}
		wantState(t, h, d.name, xenctl.StateRunning)
	}
	// A paused domain can still be destroyed, as isolation may need.
	if err := p.Suspend(ctx, d.name); err != nil {
		t.Fatal(err)
	}
	if err := h.Destroy(ctx, d.name); err != nil {
		t.Fatalf("Destroy of paused %s: %v", d.name, err)
	}
	wantState(t, h, d.name, xenctl.StateShutoff)
	unknown := newTestDomain(t, 1).name
	if err := p.Suspend(ctx, unknown); !errors.Is(err, xenctl.ErrNoDomain) {
		t.Errorf("Suspend of unknown %s = %v, want ErrNoDomain", unknown, err)
	}
	if err := p.Resume(ctx, unknown); !errors.Is(err, xenctl.ErrNoDomain) {
		t.Errorf("Resume of unknown %s = %v, want ErrNoDomain", unknown, err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Suspend(cancelled, d.name); !errors.Is(err, xenctl.ErrUnavailable) {
		t.Errorf("Suspend with a cancelled context = %v, want ErrUnavailable", err)
	}
}
