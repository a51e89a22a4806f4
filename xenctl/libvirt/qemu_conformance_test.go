package libvirt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/libvirt"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// qemuSuiteHost adapts the conformance suite's test-driver definitions to
// the real qemu driver: type qemu, the diskless guest kernel, no network
// interfaces (the test's daemon has no networks). Its guests have no ACPI, so
// Shutdown's grace is capped to keep the suite quick; the forced path is what
// a real guest deaf to ACPI takes anyway.
type qemuSuiteHost struct {
	*libvirt.Hypervisor
	kernel, console string
}

func (q qemuSuiteHost) Define(ctx context.Context, xml string) (xenctl.Domain, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(xml); err != nil || d.Type != "test" {
		return q.Hypervisor.Define(ctx, xml) // let the real path reject it
	}
	d.Type = "qemu"
	d.OS = &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"}, Kernel: q.kernel}
	d.Devices = &libvirtxml.DomainDeviceList{
		Emulator: "/usr/bin/qemu-system-x86_64",
		Serials: []libvirtxml.DomainSerial{{
			Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: q.console, Append: "on"}},
		}},
		Videos:     []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: "none"}}},
		MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
	}
	out, err := d.Marshal()
	if err != nil {
		return xenctl.Domain{}, err
	}
	return q.Hypervisor.Define(ctx, out)
}

func (q qemuSuiteHost) Shutdown(ctx context.Context, name string, grace time.Duration) (bool, error) {
	return q.Hypervisor.Shutdown(ctx, name, min(grace, 300*time.Millisecond))
}

// SetGuest makes the suite's ACPI clause run here: these guests have no
// ACPI, so every one already ignores shutdown requests. A guest that honours
// them would need a different kernel, which the suite never asks for.
func (q qemuSuiteHost) SetGuest(name string, g xenctltest.Guest) error {
	if !g.IgnoreACPI {
		return fmt.Errorf("qemu suite host: guest %s has no ACPI and cannot honour shutdown requests", name)
	}
	return nil
}

// TestConformanceQEMU runs the xenctl conformance suite against a real
// libvirtd with the qemu driver.
func TestConformanceQEMU(t *testing.T) {
	needQEMUHosts(t)
	host := startQEMUHost(t, "xenha-conf", 21)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "guest.mb")
	if err := os.WriteFile(kernel, guestKernel(), 0o644); err != nil {
		t.Fatal(err)
	}
	xenctltest.Run(t, func(t *testing.T) xenctl.Hypervisor {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		h, err := libvirt.Open(ctx, host.uri)
		if err != nil {
			t.Fatal(err)
		}
		return qemuSuiteHost{Hypervisor: h, kernel: kernel, console: filepath.Join(dir, "console.log")}
	})
}
