package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const sample = "testdata/sample"

// durations hides what differs between two runs of the same tests.
var durations = regexp.MustCompile(`\d+\.\d+s`)

func lines(s string) []string {
	l := strings.Split(durations.ReplaceAllString(s, "T"), "\n")
	slices.Sort(l)
	return l
}

// TestPrintsWhatGoTestPrints: for tests that pass, fail, skip and fail in a
// subtest, the report has exactly go test's lines (packages may come in
// another order), then the skip summary, and go test's exit status.
func TestPrintsWhatGoTestPrints(t *testing.T) {
	plain := exec.Command("go", "test", "-count=1", "./...")
	plain.Dir = sample
	want, err := plain.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("go test on the sample: %v, want exit status 1\n%s", err, want)
	}
	var out, errs bytes.Buffer
	if code := run([]string{"-count=1", "./..."}, sample, &out, &errs); code != 1 {
		t.Fatalf("run = %d, want go test's 1; stderr:\n%s", code, errs.String())
	}
	report, summary, ok := strings.Cut(out.String(), "skipped: ")
	if !ok {
		t.Fatalf("no skip summary in\n%s", out.String())
	}
	if g, w := lines(report), lines(string(want)); !slices.Equal(g, w) {
		t.Errorf("report:\n%s\nwant go test's lines:\n%s", report, want)
	}
	for _, want := range []string{
		"5 tests for 4 reasons\n  not run, for what this machine lacks (install or enable it, then run again):\n" +
			"    2  needs root; run as root\n       sample: TestNeedsRootA, TestNeedsRootB\n  skipped by design",
		"    1  a subtest's own reason\n       sample: TestSubtests/skipped\n",
		"    1  (no reason given)\n       sample: TestSilentSkip\n",
		"    1  set SAMPLE_HANG to hang\n",
	} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\nskipped: %s", want, summary)
		}
	}
}

func TestExitsZeroWhenAllPass(t *testing.T) {
	t.Setenv("SAMPLE_ALL_PASS", "1")
	var out, errs bytes.Buffer
	if code := run([]string{"-count=1", "./..."}, sample, &out, &errs); code != 0 {
		t.Fatalf("run = %d, want 0; output:\n%s%s", code, out.String(), errs.String())
	}
	if !strings.HasSuffix(out.String(), "skipped: none\n") || strings.Contains(out.String(), "FAIL") {
		t.Errorf("output:\n%s", out.String())
	}
}

// TestShowsAHungTest: a test binary that times out never ends its tests;
// their output comes before the package's FAIL line.
func TestShowsAHungTest(t *testing.T) {
	t.Setenv("SAMPLE_HANG", "1")
	var out, errs bytes.Buffer
	if code := run([]string{"-count=1", "-run", "TestHangs", "-timeout", "2s", "."}, sample, &out, &errs); code != 1 {
		t.Fatalf("run = %d, want 1; output:\n%s%s", code, out.String(), errs.String())
	}
	got := out.String()
	hang, fail := strings.Index(got, "sample_test.go:36: about to hang"), strings.Index(got, "FAIL\tsample")
	if hang < 0 || fail < hang || !strings.Contains(got, "panic: test timed out after 2s") {
		t.Errorf("want the hung test's log, the panic, then FAIL\\tsample; got:\n%s", got)
	}
}

// TestPartialLines: go test may split a line over two output events.
func TestPartialLines(t *testing.T) {
	var out bytes.Buffer
	r := newReport(&out)
	stream := `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:3: needs "}
{"Action":"output","Package":"p","Test":"TestA","Output":"tini; install it\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"--- SKIP: TestA (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestA"}
not an event
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
`
	if err := r.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	r.summary()
	want := "not an event\nok  \tp\t0.1s\nskipped: 1 tests for 1 reasons\n  skipped by design (optional interfaces, flags, helpers):\n    1  needs tini; install it\n       p: TestA\n"
	if out.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", out.String(), want)
	}
}

func TestMain(m *testing.M) {
	os.Unsetenv("SAMPLE_ALL_PASS")
	os.Unsetenv("SAMPLE_HANG")
	os.Exit(m.Run())
}
