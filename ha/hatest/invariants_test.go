package hatest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/ha/hatest"
	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// recorder stands in for a testing.T so that the checker's verdict can be
// inspected.
type recorder struct {
	t        *testing.T
	cleanups []func()
	errors   []string
}

func (r *recorder) Cleanup(f func())                  { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) { r.errors = append(r.errors, format) }
func (r *recorder) Logf(format string, args ...any)   { r.t.Logf(format, args...) }
func (r *recorder) Helper()                           {}

// The checker is only worth something if it catches a violation: a VM
// started by hand on a second host, and its MAC let through there.
func TestInvariantsCatchViolations(t *testing.T) {
	w := hatest.NewWorld(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vm := hatest.VMSpec("web", 512, 1, 7)
	if err := w.AddVMs(ctx, vm); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{t: t}
	inv := w.CheckInvariants(rec)
	home, _ := w.WaitRunning(ctx, "web", "")
	other := "h1"
	if home == "h1" {
		other = "h2"
	}
	hv := w.Host(other).Hyper
	// Blind the other host's agent, so that it cannot undo the violation.
	hv.Inject(xenctltest.Fault{Method: xenctltest.MethodDomains, Err: xenctl.ErrUnavailable})
	if _, err := hv.Define(ctx, vm.Spec.DomainXML); err != nil {
		t.Fatal(err)
	}
	if err := hv.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(inv.Violations()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	hv.ClearFaults()
	for _, f := range rec.cleanups {
		f()
	}
	v := strings.Join(inv.Violations(), "\n")
	if !strings.Contains(v, "single runner: VM web") {
		t.Fatalf("violations %q, want the double runner caught", v)
	}
	if len(rec.errors) == 0 {
		t.Fatal("the checker found violations but did not fail the test")
	}
}
