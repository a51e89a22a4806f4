package libvirt

import (
	"encoding/xml"
	"fmt"
	"slices"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/xenha/xenha/xenctl"
)

// driverDomainTypes lists the domain types each libvirt driver (as named by
// virConnectGetType) runs. A definition for another type would be refused by
// libvirt with a less helpful message, or worse, accepted and fail at start.
var driverDomainTypes = map[string][]string{
	"QEMU": {"qemu", "kvm"},
	"Xen":  {"xen"},
	"TEST": {"test"},
}

// checkDefinition validates a domain definition before it reaches libvirt:
// xenctl.ParseDomainXML's checks, plus that its type suits the driver. Errors
// wrap xenctl.ErrInvalidDomain.
func checkDefinition(domainXML, driver string) (xenctl.Spec, error) {
	spec, err := xenctl.ParseDomainXML(domainXML)
	if err != nil {
		return spec, err
	}
	if types, ok := driverDomainTypes[driver]; ok && !slices.Contains(types, spec.Type) {
		return spec, fmt.Errorf("%w: domain %q has type %q, but the %s driver runs %s; set <domain type='%s'>",
			xenctl.ErrInvalidDomain, spec.Name, spec.Type, driver, strings.Join(types, " or "), types[0])
	}
	return spec, nil
}

// guestCPU is what a migration needs to ask the destination whether it can
// run a domain's CPU.
type guestCPU struct {
	XML      string // the domain's <cpu> element; empty when there is nothing to compare
	Arch     string
	Machine  string
	VirtType string
	Emulator string
}

// cpuOfDomain extracts the CPU of a running domain from its live XML. A
// host-passthrough CPU has no model to compare, and xenha lets libvirt's own
// checks decide.
func cpuOfDomain(domainXML string) (guestCPU, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(domainXML); err != nil {
		return guestCPU{}, fmt.Errorf("reading the domain's live XML: %w", err)
	}
	g := guestCPU{VirtType: d.Type}
	if d.OS != nil && d.OS.Type != nil {
		g.Arch, g.Machine = d.OS.Type.Arch, d.OS.Type.Machine
	}
	if d.Devices != nil {
		g.Emulator = d.Devices.Emulator
	}
	if d.CPU == nil || d.CPU.Mode == "host-passthrough" || d.CPU.Mode == "maximum" ||
		(d.CPU.Model == nil && len(d.CPU.Features) == 0) {
		return g, nil
	}
	// Compare only what the guest asks for, not the topology or NUMA layout.
	c := libvirtxml.DomainCPU{Mode: d.CPU.Mode, Match: d.CPU.Match, Model: d.CPU.Model, Vendor: d.CPU.Vendor, Features: d.CPU.Features}
	if c.Mode == "" {
		c.Mode = "custom"
	}
	b, err := xml.Marshal(c)
	if err != nil {
		return guestCPU{}, fmt.Errorf("encoding the domain's CPU: %w", err)
	}
	g.XML = string(b)
	return g, nil
}

// hostCPU extracts the host CPU model, vendor and <cpu> XML from a
// capabilities document.
func hostCPU(capsXML string) (model, vendor, cpuXML string, err error) {
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(capsXML); err != nil {
		return "", "", "", fmt.Errorf("reading host capabilities: %w", err)
	}
	cpu := caps.Host.CPU
	if cpu == nil {
		return "", "", "", nil
	}
	b, err := xml.Marshal(cpu)
	if err != nil {
		return "", "", "", fmt.Errorf("encoding host CPU: %w", err)
	}
	return cpu.Model, cpu.Vendor, string(b), nil
}
