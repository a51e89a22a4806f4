package iscsi_test

import (
	"context"
	"testing"
	"time"

	"github.com/xenha/xenha/storage/iscsi"
)

// BenchmarkProbe measures the health probe against a real tgtd on loopback:
// connect, two-stage login, READ CAPACITY(16), logout.
func BenchmarkProbe(b *testing.B) {
	g := startTgtd(b)
	const iqn = "iqn.2026-11.test.xenha:bench"
	g.AddTarget(1, iqn, 64<<20)
	ctx := context.Background()
	start := time.Now()
	for b.Loop() {
		if _, err := iscsi.ReadCapacity(ctx, g.Portal, iqn, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/probe")
}

// BenchmarkDiscover measures a SendTargets discovery session.
func BenchmarkDiscover(b *testing.B) {
	g := startTgtd(b)
	g.AddTarget(1, "iqn.2026-11.test.xenha:bench", 1<<20)
	ctx := context.Background()
	start := time.Now()
	for b.Loop() {
		if _, err := iscsi.Discover(ctx, g.Portal); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/discover")
}

// BenchmarkTakeOver measures the storage-level fence: a logged-in host takes
// the LUN over from the previous generation's holder (read keys, read
// reservation, register, preempt), alternating between two hosts.
func BenchmarkTakeOver(b *testing.B) {
	g := startTgtd(b)
	const iqn = "iqn.2026-11.test.xenha:bench-pr"
	g.AddTarget(1, iqn, 1<<20)
	ctx := context.Background()
	var hosts [2]*iscsi.Session
	for i, name := range []string{"host-a", "host-b"} {
		s, err := iscsi.Login(ctx, g.Portal, iqn, iscsi.WithInitiatorName("iqn.2026-11.test.xenha:"+name))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close(ctx)
		hosts[i] = s
	}
	gen := uint64(0)
	start := time.Now()
	for b.Loop() {
		gen++
		if err := hosts[gen%2].TakeOver(ctx, 1, gen); err != nil {
			b.Fatalf("generation %d: %v", gen, err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/takeover")
}
