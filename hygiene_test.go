package xenha_test

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestEveryPackageHasDoc fails when a package (other than main packages' test
// helpers) loses its package doc comment.
func TestEveryPackageHasDoc(t *testing.T) {
	dirs := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 5 {
		t.Fatalf("found only %d package directories; is the test running at the module root?", len(dirs))
	}
	for dir := range dirs {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		for name, p := range pkgs {
			documented := false
			for _, f := range p.Files {
				if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
					documented = true
				}
			}
			if !documented {
				t.Errorf("package %s in %s has no doc comment; add one (usually in doc.go) that says what it is for", name, dir)
			}
		}
	}
}

// TestCgoStaysInXenctlLibvirt fails when ha or a leaf interface package depends
// on libvirt's cgo bindings, directly or through another package.
func TestCgoStaysInXenctlLibvirt(t *testing.T) {
	const cgoLibvirt = "libvirt.org/go/libvirt"
	out, err := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}: {{join .Deps \" \"}}",
		"./ha/...", "./fence/...", "./storage/...", "./netguard/...", "./xenctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for line := range strings.Lines(string(out)) {
		pkg, deps, _ := strings.Cut(strings.TrimSpace(line), ": ")
		if !strings.HasPrefix(pkg, "github.com/xenha/xenha/") {
			continue
		}
		checked++
		for _, d := range strings.Fields(deps) {
			if d == cgoLibvirt {
				t.Errorf("%s depends on %s; only xenctl/libvirt may use the cgo bindings (take an xenctl.Hypervisor instead)", pkg, cgoLibvirt)
			}
		}
	}
	if checked == 0 {
		t.Fatal("go list reported no xenha packages")
	}
}

// TestReadmeEmbeddingExample fails when the README's embedding snippet is no
// longer the code of ha.Example_failover, which make test compiles and runs.
func TestReadmeEmbeddingExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "## Embedding")
	if !ok {
		t.Fatal("README.md has no '## Embedding' section")
	}
	_, code, ok := strings.Cut(after, "```go\n")
	if !ok {
		t.Fatal("the README's Embedding section has no ```go block")
	}
	code, _, _ = strings.Cut(code, "```")
	example, err := os.ReadFile("ha/example_failover_test.go")
	if err != nil {
		t.Fatal(err)
	}
	// Compare line by line without indentation: the snippet sits one level
	// shallower than the function body.
	var want []string
	for l := range strings.Lines(string(example)) {
		if l = strings.TrimSpace(l); l != "" {
			want = append(want, l)
		}
	}
	var got []string
	for l := range strings.Lines(code) {
		if l = strings.TrimSpace(l); l != "" {
			got = append(got, l)
		}
	}
	if len(got) < 10 {
		t.Fatalf("the README snippet has only %d lines", len(got))
	}
	// The snippet must appear as one contiguous run of the example.
	for start := range want {
		if start+len(got) > len(want) {
			break
		}
		if slices.Equal(want[start:start+len(got)], got) {
			return
		}
	}
	t.Errorf("the README's Embedding snippet is not a contiguous excerpt of ha/example_failover_test.go; copy the code again (first line %q)", got[0])
}
