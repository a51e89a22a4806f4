package xenctl_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/xenha/xenha/xenctl"
)

const goodXML = `<domain type='kvm'>
  <name>web1</name>
  <uuid>4DEA22B31D52D8F32516782E98AB3FA0</uuid>
  <memory unit='MiB'>512</memory>
  <vcpu placement='static'>2</vcpu>
  <cpu mode='custom' match='exact'>
    <model fallback='forbid'>Skylake-Server-IBRS</model>
    <feature policy='require' name='avx512f'/>
    <feature policy='disable' name='hle'/>
    <feature name='pcid'/>
  </cpu>
  <devices>
    <interface type='bridge'><mac address='52:54:00:AB:CD:EF'/><source bridge='br0'/></interface>
    <interface type='bridge'><source bridge='br1'/></interface>
  </devices>
</domain>`

func TestParseDomainXML(t *testing.T) {
	s, err := xenctl.ParseDomainXML(goodXML)
	if err != nil {
		t.Fatal(err)
	}
	want := xenctl.Spec{Type: "kvm", Name: "web1", UUID: "4dea22b3-1d52-d8f3-2516-782e98ab3fa0",
		MemoryKiB: 512 << 10, VCPUs: 2, MACs: []string{"52:54:00:ab:cd:ef"},
		CPUModel: "Skylake-Server-IBRS", CPUFeatures: []string{"avx512f", "pcid"}}
	if s.Type != want.Type || s.Name != want.Name || s.UUID != want.UUID || s.MemoryKiB != want.MemoryKiB ||
		s.VCPUs != want.VCPUs || !slices.Equal(s.MACs, want.MACs) || s.CPUModel != want.CPUModel ||
		!slices.Equal(s.CPUFeatures, want.CPUFeatures) {
		t.Fatalf("ParseDomainXML = %+v, want %+v", s, want)
	}
}

func TestParseDomainXMLMemoryUnits(t *testing.T) {
	for _, tc := range []struct {
		mem  string
		want uint64
	}{
		{"<memory>1024</memory>", 1024},
		{"<memory unit='KiB'>1024</memory>", 1024},
		{"<memory unit='k'>7</memory>", 7},
		{"<memory unit='M'>2</memory>", 2048},
		{"<memory unit='GiB'>1</memory>", 1 << 20},
		{"<memory unit='G'>4</memory>", 4 << 20},
		{"<memory unit='T'>1</memory>", 1 << 30},
		{"<memory unit='MB'>1</memory>", 977},
		{"<memory unit='KB'>1024</memory>", 1000},
		{"<memory unit='GB'>1</memory>", 976563},
		{"<memory unit='b'>1</memory>", 1},
		{"<memory unit='bytes'>4096</memory>", 4},
	} {
		xml := "<domain type='test'><name>a</name><uuid>" + strings.Repeat("a", 32) + "</uuid>" + tc.mem + "</domain>"
		s, err := xenctl.ParseDomainXML(xml)
		if err != nil || s.MemoryKiB != tc.want {
			t.Errorf("%s: %d KiB, %v; want %d KiB", tc.mem, s.MemoryKiB, err, tc.want)
		}
	}
}

func TestParseDomainXMLRejects(t *testing.T) {
	uuid := "<uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>"
	mem := "<memory>1024</memory>"
	for what, xml := range map[string]string{
		"empty":        "  ",
		"truncated":    "<domain><name>a</name",
		"not XML":      "hello",
		"wrong root":   "<network><name>a</name></network>",
		"no name":      "<domain>" + uuid + mem + "</domain>",
		"slash name":   "<domain><name>a/b</name>" + uuid + mem + "</domain>",
		"spaced name":  "<domain><name> a</name>" + uuid + mem + "</domain>",
		"control name": "<domain><name>a\x01b</name>" + uuid + mem + "</domain>",
		"no uuid":      "<domain><name>a</name>" + mem + "</domain>",
		"short uuid":   "<domain><name>a</name><uuid>4dea22b3</uuid>" + mem + "</domain>",
		"long uuid":    "<domain><name>a</name><uuid>" + strings.Repeat("0", 33) + "</uuid>" + mem + "</domain>",
		"bad uuid":     "<domain><name>a</name><uuid>" + strings.Repeat("g", 32) + "</uuid>" + mem + "</domain>",
		"no memory":    "<domain><name>a</name>" + uuid + "</domain>",
		"zero memory":  "<domain><name>a</name>" + uuid + "<memory>0</memory></domain>",
		"bad unit":     "<domain><name>a</name>" + uuid + "<memory unit='parsec'>1</memory></domain>",
		"overflow":     "<domain><name>a</name>" + uuid + "<memory unit='TiB'>18446744073709551615</memory></domain>",
		"zero vcpus":   "<domain><name>a</name>" + uuid + mem + "<vcpu>0</vcpu></domain>",
	} {
		_, err := xenctl.ParseDomainXML(xml)
		if !errors.Is(err, xenctl.ErrInvalidDomain) {
			t.Errorf("%s: err = %v, want ErrInvalidDomain", what, err)
		}
	}
}

func TestCanonicalUUID(t *testing.T) {
	for in, want := range map[string]string{
		"4dea22b3-1d52-d8f3-2516-782e98ab3fa0":   "4dea22b3-1d52-d8f3-2516-782e98ab3fa0",
		"4DEA22B31D52D8F32516782E98AB3FA0":       "4dea22b3-1d52-d8f3-2516-782e98ab3fa0",
		"4dea-22b3-1d52-d8f3-2516-782e-98ab3fa0": "4dea22b3-1d52-d8f3-2516-782e98ab3fa0",
	} {
		got, err := xenctl.CanonicalUUID(in)
		if err != nil || got != want {
			t.Errorf("CanonicalUUID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzParseDomainXML checks that no input panics, that every rejection wraps
// ErrInvalidDomain, and that what is accepted is self-consistent.
func FuzzParseDomainXML(f *testing.F) {
	f.Add(goodXML)
	f.Add("<domain type='test'><name>a</name><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid><memory unit='G'>1</memory></domain>")
	f.Add("<domain><name>a</name></domain>")
	f.Add("<domain")
	f.Add("")
	f.Fuzz(func(t *testing.T, xml string) {
		s, err := xenctl.ParseDomainXML(xml)
		if err != nil {
			if !errors.Is(err, xenctl.ErrInvalidDomain) {
				t.Fatalf("error %v does not wrap ErrInvalidDomain", err)
			}
			return
		}
		if s.Name == "" || s.MemoryKiB == 0 || s.VCPUs < 1 {
			t.Fatalf("accepted incomplete spec %+v", s)
		}
		if u, err := xenctl.CanonicalUUID(s.UUID); err != nil || u != s.UUID {
			t.Fatalf("accepted UUID %q is not canonical", s.UUID)
		}
	})
}
