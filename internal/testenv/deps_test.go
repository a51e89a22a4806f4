package testenv

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestDepsInstallsEveryPackage: every package a skip tells the reader to
// install is one that scripts/deps.sh installs, so 'make deps' is always the
// answer to a skip.
func TestDepsInstallsEveryPackage(t *testing.T) {
	script, err := os.ReadFile("../../scripts/deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	// The package lists are the third field of each component line:
	// "name|what it is for|pkg pkg ...".
	var listed []string
	for _, m := range regexp.MustCompile(`(?m)^\s*"[a-z]+\|[^|"]*\|([^|"]*)"`).FindAllSubmatch(script, -1) {
		listed = append(listed, regexp.MustCompile(`\S+`).FindAllString(string(m[1]), -1)...)
	}
	if len(listed) < 10 {
		t.Fatalf("found only %d packages in scripts/deps.sh (%q): has its component format changed?", len(listed), listed)
	}
	for prog, pkg := range Packages {
		if !slices.Contains(listed, pkg) {
			t.Errorf("%s comes from Debian package %s, which scripts/deps.sh does not install", prog, pkg)
		}
	}
	for _, pkg := range []string{"libvirt-daemon", "libvirt-daemon-driver-qemu", "qemu-block-extra", "nfs-ganesha-vfs"} {
		if !slices.Contains(listed, pkg) {
			t.Errorf("the tests need Debian package %s, which scripts/deps.sh does not install", pkg)
		}
	}
}
