package ha

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/xenha/xenha/xenctl"
)

// Input checks of the commands an operator or a host agent writes. They run
// before a command reaches the log (on the proposing member and again on
// the leader for forwarded commands), never in apply: an entry already in
// the log applies as it always did, so members replaying an older log
// still agree.

// Limits past which a figure is a mistake, not a machine.
const (
	maxVCPUs        = 4096
	maxMemoryKiB    = 64 << 30 // 64 TiB
	maxDomainXML    = 1 << 20
	maxSpecListSize = 256
)

// validator is implemented by commands with input to check.
type validator interface{ validate() error }

// validateCommand checks cmd's input; the error names the field.
func validateCommand(cmd command) error {
	v, ok := cmd.(validator)
	if !ok {
		return nil
	}
	if err := v.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return nil
}

func (c *vmPut) validate() error {
	vm := c.VM
	if vm.Name == "" {
		return errors.New("VM Name: empty")
	}
	if err := xenctl.CheckDomainName(vm.Name); err != nil {
		return fmt.Errorf("VM %q: Name: %v", vm.Name, err)
	}
	if err := checkSpec(vm.Spec); err != nil {
		return fmt.Errorf("VM %s: %w", vm.Name, err)
	}
	if vm.Policy.MaxLocalRestarts < 0 {
		return fmt.Errorf("VM %s: Policy.MaxLocalRestarts: %d is negative", vm.Name, vm.Policy.MaxLocalRestarts)
	}
	switch vm.Policy.Restart {
	case "", RestartAlways, RestartBestEffort, RestartOff:
	default:
		return fmt.Errorf("VM %s: Policy.Restart: %q is none of %q, %q, %q", vm.Name, vm.Policy.Restart, RestartAlways, RestartBestEffort, RestartOff)
	}
	return nil
}

func checkSpec(s VMSpec) error {
	if s.VCPUs < 0 || s.VCPUs > maxVCPUs {
		return fmt.Errorf("Spec.VCPUs: %d is outside 0..%d", s.VCPUs, maxVCPUs)
	}
	if s.MemoryKiB > maxMemoryKiB {
		return fmt.Errorf("Spec.MemoryKiB: %d KiB is more than %d KiB (64 TiB)", s.MemoryKiB, uint64(maxMemoryKiB))
	}
	if len(s.MACs) > maxSpecListSize || len(s.Addrs) > maxSpecListSize || len(s.Volumes) > maxSpecListSize {
		return fmt.Errorf("Spec: more than %d MACs, addresses or volumes", maxSpecListSize)
	}
	for i, m := range s.MACs {
		hw, err := net.ParseMAC(m)
		if err != nil || len(hw) != 6 {
			return fmt.Errorf("Spec.MACs[%d]: %q is not a MAC address like 52:54:00:12:34:56", i, m)
		}
	}
	for i, a := range s.Addrs {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("Spec.Addrs[%d]: %q is not an IP address: %v", i, a, err)
		}
	}
	for i, v := range s.Volumes {
		if v == "" {
			return fmt.Errorf("Spec.Volumes[%d]: empty volume ID", i)
		}
	}
	if s.DomainXML != "" {
		if err := checkDomainXML(s.DomainXML); err != nil {
			return fmt.Errorf("Spec.DomainXML: %w", err)
		}
	}
	return nil
}

// checkDomainXML checks that x is one well-formed XML document whose root
// element is <domain> (the hypervisor checks the rest when it defines it).
func checkDomainXML(x string) error {
	if len(x) > maxDomainXML {
		return fmt.Errorf("%d bytes, more than %d", len(x), maxDomainXML)
	}
	dec := xml.NewDecoder(strings.NewReader(x))
	depth, roots := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not well-formed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if t.Name.Local != "domain" || roots > 1 {
					return fmt.Errorf("root element is <%s>, want a single <domain>", t.Name.Local)
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && strings.TrimSpace(string(t)) != "" {
				return errors.New("text outside the <domain> element")
			}
		}
	}
	if roots == 0 {
		return errors.New("no <domain> element")
	}
	return nil
}

func (c *volumePut) validate() error {
	v := c.Volume
	if v.ID == "" {
		return errors.New("Volume ID: empty")
	}
	if len(v.ID) > 255 || strings.ContainsFunc(v.ID, func(r rune) bool { return r <= ' ' || r == '/' || r == 0x7f }) {
		return fmt.Errorf("Volume %q: ID: use at most 255 printable characters without spaces or slashes (it is a disk serial)", v.ID)
	}
	if v.Writer != "" {
		return fmt.Errorf("Volume %s: Writer: set by the failover code, leave it empty", v.ID)
	}
	return nil
}

func (c *registerCmd) validate() error {
	if c.Capacity == nil {
		return nil // not reported: the host runs no hypervisor the agent could ask
	}
	cp := *c.Capacity
	switch {
	case cp.MemoryKiB == 0:
		return fmt.Errorf("host %s: Capacity.MemoryKiB: 0 (the hypervisor reported no memory): the host would get no VMs", c.Host)
	case cp.MemoryKiB > maxMemoryKiB:
		return fmt.Errorf("host %s: Capacity.MemoryKiB: %d KiB is more than 64 TiB", c.Host, cp.MemoryKiB)
	case cp.VCPUs <= 0 || cp.VCPUs > maxVCPUs:
		return fmt.Errorf("host %s: Capacity.VCPUs: %d is outside 1..%d", c.Host, cp.VCPUs, maxVCPUs)
	}
	return nil
}

func (c *hostJoin) validate() error {
	h := c.Host
	if err := checkName(h.ID); err != nil {
		return fmt.Errorf("host ID: %v", err)
	}
	if h.Addr == "" {
		return fmt.Errorf("host %s: Addr: empty", h.ID)
	}
	if _, _, err := net.SplitHostPort(h.Addr); err != nil {
		return fmt.Errorf("host %s: Addr: %q is not host:port: %v", h.ID, h.Addr, err)
	}
	return nil
}
