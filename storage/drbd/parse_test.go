package drbd

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the parsers' output")

// samples are real-format drbdsetup outputs, copied from the team's sample
// set (see testdata/samples/README.md).
func samples(t testing.TB) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir("testdata/samples", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".md") {
			out = append(out, p)
		}
		return err
	})
	if err != nil || len(out) < 60 {
		t.Fatalf("found %d samples (%v); copy /work/shared/samples/drbd to testdata/samples", len(out), err)
	}
	return out
}

// parseSample parses a sample with the parser its name calls for and returns
// the result as indented JSON.
func parseSample(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(path)
	var v any
	switch {
	case strings.HasPrefix(base, "status-json-"):
		v, err = ParseStatusJSON(data)
	case strings.HasPrefix(base, "status-"):
		v, err = ParseStatusText(data)
	case strings.HasPrefix(base, "events2-"):
		st, evs, perr := ParseEvents(bytes.NewReader(data))
		err = perr
		v = struct {
			Events    int        `json:"events"`
			Initial   bool       `json:"initial_state_complete"`
			Resources []Resource `json:"resources"`
		}{len(evs), st.Initial, st.Resources()}
	default:
		t.Fatalf("%s: no parser for this sample", path)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func TestParseEverySample(t *testing.T) {
	for _, p := range samples(t) {
		rel, _ := filepath.Rel("testdata/samples", p)
		golden := filepath.Join("testdata/golden", rel+".golden")
		got := parseSample(t, p)
		if *update {
			os.MkdirAll(filepath.Dir(golden), 0o755)
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v; run go test -run TestParseEverySample -update", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s parsed differently from %s:\n%s", p, golden, got)
		}
	}
}

// TestStatusFormatsAgree: for each scenario, the verbose text and the JSON
// status describe the same state, and the plain text agrees on what it shows.
func TestStatusFormatsAgree(t *testing.T) {
	for _, sc := range []string{"healthy-2node", "peer-lost-3node", "resync-source", "standalone-noquorum", "diskless-client", "no-resources"} {
		read := func(name string) []Resource {
			data, err := os.ReadFile(filepath.Join("testdata/samples", name))
			if err != nil {
				t.Fatal(err)
			}
			var r []Resource
			if strings.HasSuffix(name, ".json") {
				r, err = ParseStatusJSON(data)
			} else {
				r, err = ParseStatusText(data)
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return r
		}
		js := read("status-json-" + sc + ".json")
		verbose := read("status-verbose-" + sc + ".txt")
		plain := read("status-" + sc + ".txt")
		if !reflect.DeepEqual(js, verbose) && !(len(js) == 0 && len(verbose) == 0) {
			a, _ := json.Marshal(js)
			b, _ := json.Marshal(verbose)
			t.Errorf("%s: JSON and verbose text disagree:\njson    %s\nverbose %s", sc, a, b)
		}
		if len(plain) != len(js) {
			t.Fatalf("%s: plain text has %d resources, JSON %d", sc, len(plain), len(js))
		}
		for i := range plain {
			p, j := plain[i], js[i]
			if p.Name != j.Name || p.Role != j.Role || len(p.Devices) != len(j.Devices) || p.Devices[0].Disk != j.Devices[0].Disk {
				t.Errorf("%s: plain %+v vs JSON %+v", sc, p, j)
			}
			for k, c := range p.Connections {
				jc := j.Connections[k]
				if c.Name != jc.Name || (c.PeerRole != "" && c.PeerRole != jc.PeerRole) || (c.State != "" && c.State != jc.State) {
					t.Errorf("%s: connection %+v vs JSON %+v", sc, c, jc)
				}
			}
		}
	}
}

func TestParseTolerance(t *testing.T) {
	// Missing keys, unknown keys, numbers as strings, "peer-devices" spelled
	// with a dash, booleans as yes/no.
	r, err := ParseStatusJSON([]byte(`[{"name":"r0","future-key":{"x":1},"devices":[{"minor":"7","disk-state":"UpToDate","quorum":"yes"}],
		"connections":[{"name":"b","peer-devices":[{"peer-disk-state":"Outdated"}]}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	if r[0].Devices[0].Minor != 7 || !*r[0].Devices[0].Quorum || r[0].Connections[0].PeerDevices[0].PeerDisk != "Outdated" || r[0].Role != "" {
		t.Fatalf("%+v", r)
	}
	for _, bad := range []string{``, `{`, `[{"role":"Primary"}]`, `"x"`} {
		if _, err := ParseStatusJSON([]byte(bad)); err == nil {
			t.Errorf("ParseStatusJSON(%q) accepted it", bad)
		}
	}
	if _, err := ParseStatusText([]byte("  disk:UpToDate\n")); err == nil {
		t.Error("indented line before any resource accepted")
	}
	ev, err := ParseEvent("change connection name:r0 peer-node-id:1 conn-name:b connection:Connected role:Primary tls:no brand-new-key:x junk")
	if err != nil || ev.Get("role") != "Primary" || ev.Get("brand-new-key") != "x" {
		t.Fatalf("%+v %v", ev, err)
	}
	ev, err = ParseEvent("create path name:r0 peer-node-id:1 conn-name:b local:ipv4:198.18.0.1:7789 peer:ipv4:198.18.0.2:7789")
	if err != nil || ev.Get("local") != "ipv4:198.18.0.1:7789" {
		t.Fatalf("%+v %v", ev, err)
	}
	if _, err := ParseEvent("exists"); err == nil {
		t.Error("verb without object accepted")
	}
	if _, err := ParseEvent("2026-13-45T99:99:99.000000+00:00 exists -"); err == nil {
		t.Error("bad timestamp accepted")
	}
}

func TestEventsSplitBrain(t *testing.T) {
	st, _, err := ParseEvents(strings.NewReader(splitBrainEvents))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := st.Resource("vm-disk1")
	if !ok || len(r.Connections) != 1 || !r.Connections[0].SplitBrain || r.Connections[0].State != "StandAlone" {
		t.Fatalf("%+v", r)
	}
}

// splitBrainEvents is events2-all-create-helper with the helper the kernel
// calls on split brain in place of before-resync-target, after the
// connection dropped to StandAlone.
const splitBrainEvents = `exists resource name:vm-disk1 role:Primary suspended:no force-io-failures:no may_promote:no promotion_score:10101
exists device name:vm-disk1 volume:0 minor:1000 backing_dev:/dev/sda disk:UpToDate client:no open:no quorum:yes
exists connection name:vm-disk1 peer-node-id:1 conn-name:node-b connection:Connected role:Secondary
exists -
change connection name:vm-disk1 peer-node-id:1 conn-name:node-b connection:StandAlone role:Unknown
call helper name:vm-disk1 peer-node-id:1 conn-name:node-b volume:0 helper:split-brain
response helper name:vm-disk1 peer-node-id:1 conn-name:node-b volume:0 helper:split-brain status:0
`

func FuzzParseStatusJSON(f *testing.F) {
	for _, p := range samples(f) {
		if strings.Contains(p, "status-json-") {
			data, _ := os.ReadFile(p)
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseStatusJSON(data)
		if err == nil {
			for _, r := range rs {
				if r.Name == "" {
					t.Fatal("resource without a name accepted")
				}
			}
		}
	})
}

func FuzzParseStatusText(f *testing.F) {
	for _, p := range samples(f) {
		if b := filepath.Base(p); strings.HasPrefix(b, "status-") && !strings.HasPrefix(b, "status-json-") {
			data, _ := os.ReadFile(p)
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseStatusText(data)
		if err == nil {
			for _, r := range rs {
				if r.Name == "" || strings.ContainsAny(r.Name, " \t") {
					t.Fatalf("bad resource name %q", r.Name)
				}
			}
		}
	})
}

func FuzzParseEvents(f *testing.F) {
	for _, p := range samples(f) {
		if strings.Contains(p, "events2-") {
			data, _ := os.ReadFile(p)
			f.Add(data)
		}
	}
	f.Add([]byte(splitBrainEvents))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, _, _ := ParseEvents(bytes.NewReader(data))
		for _, r := range st.Resources() {
			seen := map[int]bool{}
			for _, c := range r.Connections {
				if seen[c.PeerNodeID] {
					t.Fatalf("connection to peer %d twice: %+v", c.PeerNodeID, r)
				}
				seen[c.PeerNodeID] = true
			}
		}
	})
}
