package xenctl

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"libvirt.org/go/libvirtxml"
)

// Spec is what xenha needs to know about a domain definition before it reaches
// a hypervisor: identity, size, network identities and CPU requirements.
type Spec struct {
	Type      string // libvirt domain type: "xen", "kvm", "qemu", "test"
	Name      string
	UUID      string // canonical lowercase 8-4-4-4-12 form
	MemoryKiB uint64
	VCPUs     int
	MACs      []string // lowercase, in device order
	// CPUModel is the guest CPU model a custom or host-model CPU asks for;
	// empty for host-passthrough or no <cpu> element.
	CPUModel string
	// CPUFeatures are the features the definition requires (policy require or
	// force), which a migration destination must offer.
	CPUFeatures []string
}

// ParseDomainXML validates a libvirt domain definition and extracts its Spec.
// It rejects, with an error wrapping ErrInvalidDomain, XML that does not parse,
// a missing or malformed name or UUID, and a missing or zero memory size.
// libvirt would generate a missing UUID; xenha refuses, because a domain's
// identity must be the same on every host it may run on.
func ParseDomainXML(xml string) (Spec, error) {
	var d libvirtxml.Domain
	if strings.TrimSpace(xml) == "" {
		return Spec{}, fmt.Errorf("%w: empty domain XML", ErrInvalidDomain)
	}
	if err := d.Unmarshal(xml); err != nil {
		return Spec{}, fmt.Errorf("%w: domain XML does not parse: %v", ErrInvalidDomain, err)
	}
	if err := CheckDomainName(d.Name); err != nil {
		return Spec{}, err
	}
	uuid, err := CanonicalUUID(d.UUID)
	if err != nil {
		return Spec{}, fmt.Errorf("domain %q: %w", d.Name, err)
	}
	s := Spec{Type: d.Type, Name: d.Name, UUID: uuid}
	if d.Memory == nil {
		return Spec{}, fmt.Errorf("%w: domain %q has no <memory>; give its size, e.g. <memory unit='MiB'>512</memory>", ErrInvalidDomain, d.Name)
	}
	s.MemoryKiB, err = memoryKiB(uint64(d.Memory.Value), d.Memory.Unit)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: domain %q: %v", ErrInvalidDomain, d.Name, err)
	}
	if s.MemoryKiB == 0 {
		return Spec{}, fmt.Errorf("%w: domain %q has zero memory", ErrInvalidDomain, d.Name)
	}
	s.VCPUs = 1
	if d.VCPU != nil {
		if d.VCPU.Value == 0 {
			return Spec{}, fmt.Errorf("%w: domain %q has <vcpu>0</vcpu>; a domain needs at least one", ErrInvalidDomain, d.Name)
		}
		s.VCPUs = int(d.VCPU.Value)
	}
	if d.Devices != nil {
		for _, in := range d.Devices.Interfaces {
			if in.MAC != nil && in.MAC.Address != "" {
				s.MACs = append(s.MACs, strings.ToLower(in.MAC.Address))
			}
		}
	}
	if c := d.CPU; c != nil && c.Mode != "host-passthrough" {
		if c.Model != nil {
			s.CPUModel = strings.TrimSpace(c.Model.Value)
		}
		for _, f := range c.Features {
			if f.Policy == "" || f.Policy == "require" || f.Policy == "force" {
				s.CPUFeatures = append(s.CPUFeatures, f.Name)
			}
		}
	}
	return s, nil
}

// CheckDomainName reports, wrapping ErrInvalidDomain, why name cannot name a
// domain: empty, too long, or holding '/' or control characters, which libvirt
// and Xen's toolstack refuse or mangle.
func CheckDomainName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: domain has no <name>", ErrInvalidDomain)
	case len(name) > 200:
		return fmt.Errorf("%w: domain name %.20q... is %d bytes; keep it under 200", ErrInvalidDomain, name, len(name))
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("%w: domain name %q contains '/'", ErrInvalidDomain, name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: domain name %q has leading or trailing space", ErrInvalidDomain, name)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%w: domain name %q contains a control or invalid character", ErrInvalidDomain, name)
		}
	}
	return nil
}

// errBadUUID explains the accepted UUID forms once.
var errBadUUID = errors.New("want 32 hex digits, e.g. 4dea22b3-1d52-d8f3-2516-782e98ab3fa0")

// CanonicalUUID returns u in canonical lowercase 8-4-4-4-12 form. It accepts the
// forms libvirt accepts: 32 hex digits, optionally split by '-'.
func CanonicalUUID(u string) (string, error) {
	if strings.TrimSpace(u) == "" {
		return "", fmt.Errorf("%w: no <uuid>; give every HA domain a fixed UUID", ErrInvalidDomain)
	}
	var hex []byte
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case c == '-':
			continue
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", fmt.Errorf("%w: UUID %q: %v", ErrInvalidDomain, u, errBadUUID)
		}
		hex = append(hex, c)
	}
	if len(hex) != 32 {
		return "", fmt.Errorf("%w: UUID %q: %v", ErrInvalidDomain, u, errBadUUID)
	}
	h := string(hex)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// memoryKiB converts a libvirt scaled integer to KiB. libvirt's units: b/bytes,
// KB/MB/GB/TB are powers of 1000, k/KiB, M/MiB, G/GiB, T/TiB powers of 1024;
// the default is KiB.
func memoryKiB(v uint64, unit string) (uint64, error) {
	var bytesPer uint64
	switch unit {
	case "b", "bytes":
		bytesPer = 1
	case "KB":
		bytesPer = 1000
	case "", "k", "K", "KiB":
		return v, nil
	case "MB":
		bytesPer = 1000 * 1000
	case "m", "M", "MiB":
		bytesPer = 1 << 20
	case "GB":
		bytesPer = 1000 * 1000 * 1000
	case "g", "G", "GiB":
		bytesPer = 1 << 30
	case "TB":
		bytesPer = 1000 * 1000 * 1000 * 1000
	case "t", "T", "TiB":
		bytesPer = 1 << 40
	default:
		return 0, fmt.Errorf("unknown memory unit %q", unit)
	}
	if v != 0 && bytesPer > ^uint64(0)/v {
		return 0, fmt.Errorf("memory %d %s overflows", v, unit)
	}
	b := v * bytesPer
	return (b + 1023) / 1024, nil
}
