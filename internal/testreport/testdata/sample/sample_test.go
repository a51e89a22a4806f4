// Package sample is go test's input for testreport's tests: tests that pass,
// fail and skip, alone and as subtests.
package sample

import (
	"os"
	"testing"
)

func TestPasses(t *testing.T) { t.Log("a passing test's log, which go test does not print") }

func TestFails(t *testing.T) {
	t.Log("before the failure")
	t.Error("the failure,\nover two lines")
}

func TestNeedsRootA(t *testing.T) {
	t.Log("something logged before the skip")
	t.Skip("machine lacks: needs root; run as root")
}

func TestNeedsRootB(t *testing.T) { t.Skipf("machine lacks: needs %s; run as root", "root") }

func TestSubtests(t *testing.T) {
	t.Run("ok", func(t *testing.T) {})
	t.Run("skipped", func(t *testing.T) { t.Skip("a subtest's own reason") })
	t.Run("bad", func(t *testing.T) { t.Fatal("a subtest failed") })
}

func TestSilentSkip(t *testing.T) { t.SkipNow() }

func TestHangs(t *testing.T) {
	if os.Getenv("SAMPLE_HANG") == "" {
		t.Skip("set SAMPLE_HANG to hang")
	}
	t.Log("about to hang")
	select {}
}

func TestMain(m *testing.M) {
	if os.Getenv("SAMPLE_ALL_PASS") != "" {
		os.Exit(0)
	}
	os.Exit(m.Run())
}
