package xenctltest_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestDomainXMLGolden pins the definitions the suite and other packages' tests
// define, and checks that they pass xenctl's validation.
func TestDomainXMLGolden(t *testing.T) {
	for file, xml := range map[string]string{
		"test.xml": xenctltest.DomainXML("web1", "4dea22b3-1d52-d8f3-2516-782e98ab3fa0", 524288, 2, "52:54:00:12:34:56", "52:54:00:12:34:57"),
		"qemu.xml": xenctltest.DomainXMLType("qemu", "db<1>", "5eea22b3-1d52-d8f3-2516-782e98ab3fa1", 1048576, 1),
	} {
		spec, err := xenctl.ParseDomainXML(xml)
		if err != nil {
			t.Fatalf("%s does not validate: %v", file, err)
		}
		if spec.MemoryKiB == 0 || spec.VCPUs == 0 {
			t.Errorf("%s: parsed %+v", file, spec)
		}
		path := filepath.Join("testdata", file)
		if *update {
			if err := os.WriteFile(path, []byte(xml), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v; run go test -update to create it", err)
		}
		if string(want) != xml {
			t.Errorf("%s changed:\n%s\nwant:\n%s\n(run go test -update if intended)", file, xml, want)
		}
	}
	// Names are escaped, not injected.
	spec, _ := xenctl.ParseDomainXML(xenctltest.DomainXMLType("qemu", "db<1>", "5eea22b3-1d52-d8f3-2516-782e98ab3fa1", 1024, 1))
	if spec.Name != "db<1>" {
		t.Errorf("escaped name round-trips as %q", spec.Name)
	}
}
