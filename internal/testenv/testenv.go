// Package testenv lets a test ask for what it needs from the machine (root, a
// binary, network namespaces) and skip, saying why, only where that capability
// is truly absent. Under CI=true a missing capability fails the test instead:
// CI installs everything, so a skip there would hide a broken set-up.
//
// A skip names what is missing and the command that installs it, so that the
// summary at the end of 'make test' (internal/testreport) reads as a to-do
// list: every reason there is a part of xenha that did not run.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipPrefix begins the reason of every skip for a capability the machine
// lacks, so that a reader of the skips (internal/testreport) can tell them
// from skips by design, such as a conformance clause for an optional
// interface that a fake does not implement.
const SkipPrefix = "machine lacks: "

// Absent skips t with the reason, or fails it in CI.
func Absent(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true, but: "+format, args...)
	}
	t.Skipf(SkipPrefix+format, args...)
}

// NeedRoot skips (fails in CI) unless the test runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Absent(t, "needs root (running as uid %d); run 'make test' as root", os.Geteuid())
	}
}

// Packages maps each program a test asks for with NeedBinary to the Debian
// package that installs it. scripts/deps.sh installs every one of them
// (TestDepsInstallsEveryPackage holds the two together).
var Packages = map[string]string{
	"arping":             "iputils-arping",
	"arptables-legacy":   "arptables",
	"bridge":             "iproute2",
	"chromium":           "chromium",
	"drbdadm":            "drbd-utils",
	"fence_ipmilan":      "fence-agents",
	"ganesha.nfsd":       "nfs-ganesha",
	"ip":                 "iproute2",
	"iptables-legacy":    "iptables",
	"ipmi_sim":           "openipmi",
	"ipmitool":           "ipmitool",
	"losetup":            "mount",
	"mount":              "mount",
	"nbd-client":         "nbd-client",
	"nbd-server":         "nbd-server",
	"nft":                "nftables",
	"ping":               "iputils-ping",
	"promtool":           "prometheus",
	"qemu-img":           "qemu-utils",
	"qemu-nbd":           "qemu-utils",
	"qemu-system-x86_64": "qemu-system-x86",
	"rpcbind":            "rpcbind",
	"rpcinfo":            "rpcbind",
	"sh":                 "dash",
	"sleep":              "coreutils",
	"tcpdump":            "tcpdump",
	"tgtadm":             "tgt",
	"tgtd":               "tgt",
	"tini":               "tini",
	"unshare":            "util-linux",
}

// Install says how to install a Debian package: 'make deps' installs every
// package the tests use; apt-get installs just this one.
func Install(pkg string) string {
	return fmt.Sprintf("install it with 'make deps' as root (or 'apt-get install %s')", pkg)
}

// NeedBinary returns the path of a program, skipping (failing in CI) if it is
// not installed, with the package and the command that installs it.
func NeedBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		pkg, ok := Packages[name]
		if !ok {
			// A program missing from the table is a bug in the test, not
			// in the machine: it would skip with no way to install it.
			t.Fatalf("testenv: %s is not in testenv.Packages; add it with its Debian package, and the package to scripts/deps.sh", name)
		}
		Absent(t, "needs %s (Debian package %s), which is not installed; %s", name, pkg, Install(pkg))
	}
	return p
}

// NeedFile skips (fails in CI) unless path exists. What says what provides
// it and how to get it, e.g. "Debian package libvirt-daemon; install it with
// 'make deps' as root" (see Install).
func NeedFile(t testing.TB, path, what string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Absent(t, "needs %s (%s): %v", path, what, err)
	}
}

// NeedPackageFile is NeedFile for a file that a Debian package installs.
func NeedPackageFile(t testing.TB, path, pkg string) {
	t.Helper()
	NeedFile(t, path, "Debian package "+pkg+"; "+Install(pkg))
}
