package ha_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

// Scripted incidents whose timelines (phase order, outcomes and notes, with
// durations blanked) are compared with golden files in
// testdata/scenarios; run with -update to rewrite them.

func updateGolden() bool {
	f := flag.Lookup("update") // defined by the package's internal tests
	return f != nil && f.Value.String() == "true"
}

var durationRE = regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|ms|s|m)\b`)

// goldenTimeline renders the incidents of host, oldest first, without
// anything that depends on timing.
func goldenTimeline(s *ha.State, host string) string {
	var b strings.Builder
	for _, inc := range s.Incidents {
		if inc.Host != host {
			continue
		}
		lines := strings.Split(durationRE.ReplaceAllString(inc.Timeline(false), "<d>"), "\n")
		// VMs start in parallel on several hosts: the order of their
		// reports is not part of the story.
		for i := 0; i < len(lines); {
			j := i
			for j < len(lines) && strings.Contains(lines[j], " running on ") {
				j++
			}
			slices.Sort(lines[i:j])
			i = j + 1
		}
		b.WriteString(strings.Join(lines, "\n"))
	}
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "scenarios", name+".golden")
	if updateGolden() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("timeline of scenario %s differs from %s (-update rewrites it)\ngot:\n%s\nwant:\n%s", name, path, got, want)
	}
}

// pinnedVMs are VMs with a preferred host each, so that placement, and so
// the timeline, is the same on every run.
func pinnedVMs(pref map[string][]string) []ha.VM {
	var out []ha.VM
	n := 0
	for _, name := range []string{"app1", "app2", "db1", "db2"} {
		vm := hatest.VMSpec(name, 512, 1, n)
		vm.Policy.Preferred = pref[name]
		out = append(out, vm)
		n++
	}
	return out
}

func TestScenarios(t *testing.T) {
	t.Parallel()
	pref := map[string][]string{
		"app1": {"h1", "h3"}, "app2": {"h2", "h3"},
		"db1": {"h2", "h1"}, "db2": {"h3", "h1"},
	}
	waitClosed := func(ctx context.Context, w *hatest.World, host string) {
		t.Helper()
		if err := w.Wait(ctx, "incident of "+host+" closed", func(s *ha.State) bool {
			for _, inc := range s.Incidents {
				if inc.Host == host && !inc.Closed.IsZero() {
					return true
				}
			}
			return false
		}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("host-crash", func(t *testing.T) {
		w := hatest.NewWorld(t, 3)
		w.CheckInvariants(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.AddVMs(ctx, pinnedVMs(pref)...); err != nil {
			t.Fatal(err)
		}
		if err := w.MakeFollower(ctx, 1); err != nil {
			t.Fatal(err)
		}
		w.Kill(1)
		waitClosed(ctx, w, "h2")
		checkGolden(t, "host-crash", goldenTimeline(w.State(), "h2"))
	})
	t.Run("fence-retry", func(t *testing.T) {
		w := hatest.NewWorld(t, 3)
		w.CheckInvariants(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.AddVMs(ctx, pinnedVMs(pref)...); err != nil {
			t.Fatal(err)
		}
		if err := w.MakeFollower(ctx, 1); err != nil {
			t.Fatal(err)
		}
		w.Fencer.Script("h2", fencetest.FailTimes(2, fence.ErrUnreachable))
		w.Crash(1) // hung, not off: only the third fence round powers it off
		waitClosed(ctx, w, "h2")
		checkGolden(t, "fence-retry", goldenTimeline(w.State(), "h2"))
	})
	t.Run("host-back-before-fence", func(t *testing.T) {
		w := hatest.NewWorld(t, 3, hatest.FenceBehavior(fencetest.Succeed().WithLatency(10*time.Second)))
		w.CheckInvariants(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.AddVMs(ctx, pinnedVMs(pref)...); err != nil {
			t.Fatal(err)
		}
		if err := w.MakeFollower(ctx, 1); err != nil {
			t.Fatal(err)
		}
		w.Partition([]int{1}, []int{0, 2})
		if err := w.Wait(ctx, "h2 suspect", func(s *ha.State) bool { return s.Hosts["h2"].State == ha.HostSuspect }); err != nil {
			t.Fatal(err)
		}
		w.Heal()
		waitClosed(ctx, w, "h2")
		checkGolden(t, "host-back-before-fence", goldenTimeline(w.State(), "h2"))
	})
}
