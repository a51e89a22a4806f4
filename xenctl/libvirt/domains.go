package libvirt

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/xenha/xenha/xenctl"
)

// describe reads one domain. It returns skip for a control domain (Xen's
// dom0, id 0), which xenha never manages.
func describe(d *libvirt.Domain, driver string) (dom xenctl.Domain, skip bool, err error) {
	if dom.Name, err = d.GetName(); err != nil {
		return dom, false, err
	}
	if driver == "Xen" || dom.Name == "Domain-0" {
		if id, err := d.GetID(); err == nil && id == 0 {
			return dom, true, nil
		}
	}
	if dom.UUID, err = d.GetUUIDString(); err != nil {
		return dom, false, err
	}
	state, reason, err := d.GetState()
	if err != nil {
		return dom, false, err
	}
	dom.State, dom.Reason = mapState(int(state), reason)
	info, err := d.GetInfo()
	if err != nil {
		return dom, false, err
	}
	dom.MemoryKiB, dom.VCPUs = info.MaxMem, int(info.NrVirtCpu)
	if dom.Persistent, err = d.IsPersistent(); err != nil {
		return dom, false, err
	}
	return dom, false, nil
}

// Domains lists every guest domain, sorted by name.
func (h *Hypervisor) Domains(ctx context.Context) ([]xenctl.Domain, error) {
	var out []xenctl.Domain
	driver := h.Driver()
	err := h.do(ctx, "list domains", func(c *libvirt.Connect) error {
		all, err := c.ListAllDomains(0)
		if err != nil {
			return err
		}
		defer func() {
			for i := range all {
				_ = all[i].Free()
			}
		}()
		for i := range all {
			dom, skip, err := describe(&all[i], driver)
			if isCode(err, libvirt.ERR_NO_DOMAIN) {
				continue // a transient domain that ended while we listed
			}
			if err != nil {
				return err
			}
			if !skip {
				out = append(out, dom)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b xenctl.Domain) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// withDomain looks up name and runs fn on it, freeing it afterwards.
func (h *Hypervisor) withDomain(ctx context.Context, what, name string, fn func(c *libvirt.Connect, d *libvirt.Domain) error) error {
	return h.do(ctx, fmt.Sprintf("%s %q", what, name), func(c *libvirt.Connect) error {
		d, err := c.LookupDomainByName(name)
		if err != nil {
			return err
		}
		defer d.Free()
		return fn(c, d)
	})
}

// Domain returns one domain.
func (h *Hypervisor) Domain(ctx context.Context, name string) (xenctl.Domain, error) {
	var dom xenctl.Domain
	driver := h.Driver()
	err := h.withDomain(ctx, "look up", name, func(_ *libvirt.Connect, d *libvirt.Domain) error {
		var skip bool
		var err error
		dom, skip, err = describe(d, driver)
		if err == nil && skip {
			return libvirt.Error{Code: libvirt.ERR_NO_DOMAIN, Message: "the control domain is not managed by xenha"}
		}
		return err
	})
	if err != nil {
		// A call abandoned at ctx end may still write dom: do not read it.
		return xenctl.Domain{}, err
	}
	return dom, nil
}

// Define creates or updates a persistent domain. The definition is checked in
// Go first; a name or UUID held by another domain fails with ErrConflict
// before libvirt sees it.
func (h *Hypervisor) Define(ctx context.Context, domainXML string) (xenctl.Domain, error) {
	if ctx.Err() != nil {
		return xenctl.Domain{}, unavailable(ctx, h.uri, "define domain")
	}
	spec, err := checkDefinition(domainXML, h.Driver())
	if err != nil {
		return xenctl.Domain{}, fmt.Errorf("libvirt %s: define: %w", h.uri, err)
	}
	var conflict error
	var dom xenctl.Domain
	driver := h.Driver()
	err = h.do(ctx, fmt.Sprintf("define %q", spec.Name), func(c *libvirt.Connect) error {
		if d, err := c.LookupDomainByName(spec.Name); err == nil {
			u, _ := d.GetUUIDString()
			d.Free()
			if u != spec.UUID {
				conflict = fmt.Errorf("libvirt %s: define %q: %w: the name is taken by UUID %s, not %s; undefine it first or rename",
					h.uri, spec.Name, xenctl.ErrConflict, u, spec.UUID)
				return nil
			}
		} else if !isCode(err, libvirt.ERR_NO_DOMAIN) {
			return err
		}
		if d, err := c.LookupDomainByUUIDString(spec.UUID); err == nil {
			n, _ := d.GetName()
			d.Free()
			if n != spec.Name {
				conflict = fmt.Errorf("libvirt %s: define %q: %w: UUID %s belongs to domain %q; undefine it first or use another UUID",
					h.uri, spec.Name, xenctl.ErrConflict, spec.UUID, n)
				return nil
			}
		} else if !isCode(err, libvirt.ERR_NO_DOMAIN) {
			return err
		}
		d, err := c.DomainDefineXML(domainXML)
		if err != nil {
			return err
		}
		defer d.Free()
		dom, _, err = describe(d, driver)
		return err
	})
	if err != nil {
		return xenctl.Domain{}, err
	}
	if conflict != nil {
		return xenctl.Domain{}, conflict
	}
	return dom, nil
}

// Start boots a defined domain; a running one is left alone.
func (h *Hypervisor) Start(ctx context.Context, name string) error {
	return h.withDomain(ctx, "start", name, func(_ *libvirt.Connect, d *libvirt.Domain) error {
		if active, err := d.IsActive(); err != nil || active {
			return err
		}
		err := d.Create()
		if isCode(err, libvirt.ERR_OPERATION_INVALID) {
			if active, aerr := d.IsActive(); aerr == nil && active {
				return nil // someone else started it meanwhile
			}
		}
		return err
	})
}

// Destroy stops a domain at once; a stopped one is left alone.
func (h *Hypervisor) Destroy(ctx context.Context, name string) error {
	return h.withDomain(ctx, "destroy", name, func(_ *libvirt.Connect, d *libvirt.Domain) error {
		if active, err := d.IsActive(); err != nil || !active {
			return err
		}
		err := d.Destroy()
		if isCode(err, libvirt.ERR_OPERATION_INVALID) {
			if active, aerr := d.IsActive(); aerr == nil && !active {
				return nil // it stopped by itself meanwhile
			}
		}
		return err
	})
}

// Undefine removes a domain's definition, with its managed-save image and
// snapshot metadata. A running domain keeps running, as a transient domain.
func (h *Hypervisor) Undefine(ctx context.Context, name string) error {
	return h.withDomain(ctx, "undefine", name, func(_ *libvirt.Connect, d *libvirt.Domain) error {
		err := d.UndefineFlags(libvirt.DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
		if isCode(err, libvirt.ERR_INVALID_ARG) || isCode(err, libvirt.ERR_NO_SUPPORT) {
			err = d.Undefine() // drivers without those flags
		}
		return err
	})
}

// Shutdown asks the guest to shut down (ACPI, or the driver's default), polls
// until it is off or grace has passed, and then destroys it.
func (h *Hypervisor) Shutdown(ctx context.Context, name string, grace time.Duration) (bool, error) {
	dom, err := h.Domain(ctx, name)
	switch {
	case err != nil:
		return false, err
	case dom.State == xenctl.StateCrashed:
		return true, h.Destroy(ctx, name)
	case !dom.State.Active():
		return false, nil
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	err = h.withDomain(ctx, "shut down", name, func(_ *libvirt.Connect, d *libvirt.Domain) error {
		err := d.Shutdown()
		if isCode(err, libvirt.ERR_OPERATION_INVALID) {
			return nil // not running any more
		}
		return err
	})
	if err != nil {
		return false, err
	}
	tick := time.NewTicker(h.pollEvery)
	defer tick.Stop()
	for {
		dom, err := h.Domain(ctx, name)
		switch {
		case errorsIsNoDomain(err):
			return false, nil // a transient domain vanishes when it stops
		case err != nil:
			return false, err
		case !dom.State.Active():
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, unavailable(ctx, h.uri, fmt.Sprintf("wait for %q to shut down", name))
		case <-deadline.C:
			h.log.Info("guest ignored shutdown; destroying", "uri", h.uri, "domain", name, "grace", grace)
			return true, h.Destroy(ctx, name)
		case <-tick.C:
		}
	}
}

// HostInfo reports the host's memory, CPUs and CPU model.
func (h *Hypervisor) HostInfo(ctx context.Context) (xenctl.HostInfo, error) {
	var info xenctl.HostInfo
	err := h.do(ctx, "host info", func(c *libvirt.Connect) error {
		var err error
		if info.Hostname, err = c.GetHostname(); err != nil {
			return err
		}
		if info.Hypervisor, err = c.GetType(); err != nil {
			return err
		}
		node, err := c.GetNodeInfo()
		if err != nil {
			return err
		}
		info.MemoryKiB, info.CPUs = node.Memory, int(node.Cpus)
		free, err := c.GetFreeMemory()
		switch {
		case err == nil:
			info.FreeMemoryKiB = min(free/1024, info.MemoryKiB)
		case isCode(err, libvirt.ERR_NO_DOMAIN), !isAlive(c):
			return err
		default:
			// Some drivers (the test driver without NUMA cells) cannot
			// count free memory; estimate it from the running domains.
			if info.FreeMemoryKiB, err = freeByDomains(c, info.MemoryKiB); err != nil {
				return err
			}
		}
		caps, err := c.GetCapabilities()
		if err != nil {
			return err
		}
		info.CPUModel, info.CPUVendor, info.CPUXML, err = hostCPU(caps)
		if info.CPUModel == "" {
			info.CPUModel = node.Model
		}
		return err
	})
	if err != nil {
		return xenctl.HostInfo{}, err
	}
	return info, nil
}

func isAlive(c *libvirt.Connect) bool {
	alive, err := c.IsAlive()
	return err == nil && alive
}

// freeByDomains estimates free memory as total minus what active domains hold.
func freeByDomains(c *libvirt.Connect, totalKiB uint64) (uint64, error) {
	active, err := c.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return 0, err
	}
	var used uint64
	for i := range active {
		if info, err := active[i].GetInfo(); err == nil {
			used += info.Memory
		}
		_ = active[i].Free()
	}
	if used >= totalKiB {
		return 0, nil
	}
	return totalKiB - used, nil
}
