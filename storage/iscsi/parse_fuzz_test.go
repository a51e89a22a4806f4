package iscsi

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenha/xenha/storage/internal/run"
)

// recordedOutputs returns the stdout of every recorded host-tool step.
func recordedOutputs(f *testing.F) []string {
	files, _ := filepath.Glob(filepath.Join("testdata", "host", "*.txt"))
	var out []string
	for _, name := range files {
		steps, err := run.ReadTranscript(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, st := range steps {
			out = append(out, st.Stdout)
		}
	}
	return out
}

// FuzzToolOutput feeds arbitrary text to every parser of iscsiadm and
// sg_persist output: none may panic, and what they accept is consistent
// (a key list never empty after "follow", disks only under a session).
func FuzzToolOutput(f *testing.F) {
	for _, s := range recordedOutputs(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if found, err := parseDiscovery(s); err == nil {
			for iqn := range found {
				if strings.ContainsAny(iqn, " \t\n") {
					t.Fatalf("discovery accepted IQN %q", iqn)
				}
			}
		}
		if sessions, err := parseSessions(s); err == nil {
			for _, ss := range sessions {
				for lun, d := range ss.Disks {
					if lun < 0 || d == "" || strings.ContainsAny(d, "/.") {
						t.Fatalf("session %+v: disk %q for LUN %d", ss, d, lun)
					}
				}
			}
		}
		if keys, err := parseKeys(s); err == nil && strings.Contains(s, "follow") && len(keys) == 0 {
			t.Fatalf("parseKeys(%q) accepted an announced list with no keys", s)
		}
		_, _ = parseReservation(s)
	})
}
