package ha

import (
	"strings"
	"testing"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/xenctl"
)

const diskDomain = `<domain type='kvm'>
  <name>db1</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <memory unit='MiB'>512</memory>
  <devices>
    <disk type='file' device='disk'>
      <source file='/nowhere'/>
      <target dev='vda' bus='virtio'/>
      <serial>vol-db1</serial>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/tools.iso'/>
      <target dev='hdc' bus='ide'/>
    </disk>
  </devices>
</domain>`

func TestWithDiskSources(t *testing.T) {
	tests := []struct {
		name string
		src  storage.Source
		want []string
	}{
		{"block", storage.Source{Type: storage.SourceBlock, Path: "/dev/drbd1"}, []string{`<disk type="block" device="disk">`, `dev="/dev/drbd1"`}},
		{"network", storage.Source{Type: storage.SourceNetwork, Protocol: "nbd", Name: "db1", Hosts: []storage.HostPort{{Host: "198.18.0.9", Port: 10809}}},
			[]string{`<disk type="network" device="disk">`, `protocol="nbd"`, `name="198.18.0.9" port="10809"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := withDiskSources(diskDomain, map[string]storage.Source{"vol-db1": tt.src})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %s:\n%s", w, out)
				}
			}
			if !strings.Contains(out, "/iso/tools.iso") || strings.Contains(out, "/nowhere") {
				t.Errorf("wrong disk rewritten:\n%s", out)
			}
			if _, err := xenctl.ParseDomainXML(out); err != nil {
				t.Errorf("rewritten definition is invalid: %v", err)
			}
		})
	}
	if out, _ := withDiskSources(diskDomain, map[string]storage.Source{"other": {Type: storage.SourceBlock, Path: "/x"}}); out != diskDomain {
		t.Error("a definition without a matching disk was changed")
	}
	if _, err := withDiskSources("<domain", map[string]storage.Source{"v": {}}); err == nil {
		t.Error("malformed XML accepted")
	}
}
