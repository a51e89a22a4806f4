package xenctltest

import (
	"fmt"
	"html"
	"strings"
)

// DomainXML returns a minimal valid definition of a domain for libvirt's test
// driver (type 'test'): name, UUID, memory in KiB, vCPUs and one network
// interface per MAC. The fake accepts it too.
func DomainXML(name, uuid string, memKiB uint64, vcpus int, macs ...string) string {
	return DomainXMLType("test", name, uuid, memKiB, vcpus, macs...)
}

// DomainXMLType is DomainXML for another domain type, e.g. "qemu" (TCG),
// "kvm" or "xen". The definition has no disks and no emulator, so a real
// hypervisor can define it but may need more to boot it.
func DomainXMLType(typ, name, uuid string, memKiB uint64, vcpus int, macs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<domain type='%s'>\n", html.EscapeString(typ))
	fmt.Fprintf(&b, "  <name>%s</name>\n  <uuid>%s</uuid>\n", html.EscapeString(name), html.EscapeString(uuid))
	fmt.Fprintf(&b, "  <memory unit='KiB'>%d</memory>\n  <vcpu>%d</vcpu>\n", memKiB, vcpus)
	b.WriteString("  <os><type arch='x86_64'>hvm</type></os>\n")
	b.WriteString("  <devices>\n")
	for _, m := range macs {
		fmt.Fprintf(&b, "    <interface type='network'><mac address='%s'/><source network='default'/></interface>\n", html.EscapeString(m))
	}
	b.WriteString("  </devices>\n</domain>\n")
	return b.String()
}
