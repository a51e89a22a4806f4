package ha

import (
	"fmt"
	"strconv"

	"libvirt.org/go/libvirtxml"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/xenctl"
)

// withDiskSources points the domain's disks at the volumes as this host
// attached them. A <disk> is tied to a volume by its <serial>, which must be
// the volume ID; the same definition then works on every host, whatever
// device path or session each one got from its storage backend. A
// definition with no such disk is returned unchanged (pure Go: libvirtxml,
// not the cgo bindings).
func withDiskSources(domainXML string, sources map[string]storage.Source) (string, error) {
	if len(sources) == 0 {
		return domainXML, nil
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(domainXML); err != nil {
		return "", fmt.Errorf("%w: domain XML does not parse: %v", xenctl.ErrInvalidDomain, err)
	}
	if d.Devices == nil {
		return domainXML, nil
	}
	changed := false
	for i := range d.Devices.Disks {
		disk := &d.Devices.Disks[i]
		src, ok := sources[disk.Serial]
		if disk.Serial == "" || !ok {
			continue
		}
		ds := &libvirtxml.DomainDiskSource{}
		switch src.Type {
		case storage.SourceBlock:
			ds.Block = &libvirtxml.DomainDiskSourceBlock{Dev: src.Path}
		case storage.SourceFile:
			ds.File = &libvirtxml.DomainDiskSourceFile{File: src.Path}
		case storage.SourceNetwork:
			n := &libvirtxml.DomainDiskSourceNetwork{Protocol: src.Protocol, Name: src.Name}
			for _, h := range src.Hosts {
				hp := libvirtxml.DomainDiskSourceHost{Name: h.Host}
				if h.Port != 0 {
					hp.Port = strconv.Itoa(h.Port)
				}
				n.Hosts = append(n.Hosts, hp)
			}
			ds.Network = n
		default:
			return "", fmt.Errorf("volume %s: storage source type %q cannot be put in a domain definition", disk.Serial, src.Type)
		}
		disk.Source = ds
		if src.ReadOnly {
			disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		changed = true
	}
	if !changed {
		return domainXML, nil
	}
	out, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("domain %s: write disk sources: %w", d.Name, err)
	}
	return out, nil
}
