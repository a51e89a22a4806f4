package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/xenha/xenha/ha
cpu: Some CPU
BenchmarkFailover/non-leader-2         	       1	2345678901 ns/op	       812.5 ms/failover-p50	       990.0 ms/failover-p90	 1234 B/op	      56 allocs/op
BenchmarkCommit-2   	   12000	     95000 ns/op
PASS
ok  	github.com/xenha/xenha/ha	12.3s
pkg: github.com/xenha/xenha/netguard/nft
BenchmarkApply1000-2  10  4.5e+06 ns/op
--- FAIL: BenchmarkBroken
FAIL
FAIL	github.com/xenha/xenha/storage/nbd	0.1s
`

func TestParse(t *testing.T) {
	rep := parse(strings.NewReader(sample))
	if len(rep.Results) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(rep.Results), rep.Results)
	}
	f := rep.Results[0]
	if f.Package != "github.com/xenha/xenha/ha" || f.Name != "Failover/non-leader" || f.Iterations != 1 {
		t.Errorf("first result = %+v", f)
	}
	if f.Metrics["ms/failover-p50"] != 812.5 || f.Metrics["allocs/op"] != 56 {
		t.Errorf("metrics = %v", f.Metrics)
	}
	if got := rep.Results[2]; got.Package != "github.com/xenha/xenha/netguard/nft" || got.Metrics["ns/op"] != 4.5e6 {
		t.Errorf("third result = %+v", got)
	}
	if len(rep.Failed) != 2 || rep.Failed[0] != "BenchmarkBroken" || rep.Failed[1] != "github.com/xenha/xenha/storage/nbd" {
		t.Errorf("failed = %v", rep.Failed)
	}
}

func TestTableListsCustomFiguresFirst(t *testing.T) {
	var buf bytes.Buffer
	printTable(&buf, parse(strings.NewReader(sample)))
	out := buf.String()
	p50 := strings.Index(out, "ms/failover-p50")
	ns := strings.Index(out, "ns/op")
	if p50 < 0 || ns < 0 || p50 > ns {
		t.Errorf("custom figures should come before ns/op:\n%s", out)
	}
}

func TestParseLineRejectsNoise(t *testing.T) {
	for _, l := range []string{"Benchmarking is fun", "BenchmarkX-2 notanumber 5 ns/op", "BenchmarkX-2 10"} {
		if _, ok := parseLine("p", l); ok {
			t.Errorf("parseLine(%q) accepted noise", l)
		}
	}
}
