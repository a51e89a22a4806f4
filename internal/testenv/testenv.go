// Package testenv lets a test ask for what it needs from the machine (root, a
// binary, network namespaces) and skip, saying why, only where that capability
// is truly absent. Under CI=true a missing capability fails the test instead:
// CI installs everything, so a skip there would hide a broken set-up.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Absent skips t with the reason, or fails it in CI.
func Absent(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true, but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// NeedRoot skips (fails in CI) unless the test runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Absent(t, "needs root (running as uid %d); run 'make test' as root", os.Geteuid())
	}
}

// NeedBinary returns the path of a program, skipping (failing in CI) if it is
// not installed. 'make deps' installs every program the tests use.
func NeedBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Absent(t, "needs %s, which is not installed; run 'make deps'", name)
	}
	return p
}

// NeedFile skips (fails in CI) unless path exists.
func NeedFile(t testing.TB, path, why string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Absent(t, "needs %s (%s): %v", path, why, err)
	}
}
