package ha_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkCommit measures committed commands per second and commit latency
// on 3 members over TCP + bbolt with mutual TLS: one proposer on the leader
// with Raft's apply batching off, 16 and 64 concurrent proposers with it off
// and on, and writes forwarded from a follower. Raft forms a group commit
// (one log write, one append to each follower) from whatever proposals wait
// when the leader's loop is free, in both modes; batching only buffers the
// channel they wait on. So throughput is the number of proposals in flight
// over the commit latency (the leader's log write, then a follower's, in
// series, one append at a time per follower since the pipeline is off).
func BenchmarkCommit(b *testing.B) {
	cases := []struct {
		name      string
		batching  bool
		proposers int
		follower  bool
	}{
		{"leader-sequential-unbatched", false, 1, false},
		{"leader-concurrent16-unbatched", false, 16, false},
		{"leader-concurrent16-batched", true, 16, false},
		{"leader-concurrent64-batched", true, 64, false},
		{"follower-concurrent16-batched", true, 16, true},
		{"follower-concurrent64-batched", true, 64, true},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			hc := hatest.New(b, 3, hatest.WithTCP(), hatest.WithOptions(ha.WithBatching(bc.batching)))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			l, err := hc.WaitLeader(ctx)
			if err != nil {
				b.Fatal(err)
			}
			via := hc.Member(l)
			if bc.follower {
				via = hc.Member((l + 1) % 3)
			}
			// At least 200 commands, so one run (BENCHTIME=1x) still measures.
			n := max(b.N, 200)
			var next atomic.Int64
			lat := make([][]time.Duration, bc.proposers)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for p := range bc.proposers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						k := next.Add(1)
						if k > int64(n) {
							return
						}
						t0 := time.Now()
						if err := putValue(ctx, via, fmt.Sprintf("vm%d", k%64), uint64(k)); err != nil {
							b.Error(err)
							return
						}
						lat[p] = append(lat[p], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			all := slices.Concat(lat...)
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "cmds/s")
			b.ReportMetric(ms(percentile(all, 0.5)), "ms/commit-p50")
			b.ReportMetric(ms(percentile(all, 0.99)), "ms/commit-p99")
		})
	}
}

// BenchmarkLeaderFailover kills the leader of 3 members (TCP + bbolt) and
// measures the time until a new leader is elected and a first write through
// a survivor commits, for the default and the fast-LAN profile.
func BenchmarkLeaderFailover(b *testing.B) {
	for _, p := range []struct {
		name   string
		cfg    ha.Config
		rounds int
	}{
		{"default", ha.DefaultConfig(), 3},
		{"fastlan", ha.FastLAN(), 5},
	} {
		b.Run(p.name, func(b *testing.B) {
			hc := hatest.New(b, 3, hatest.WithTCP(), hatest.WithProfile(p.cfg))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var elect, write []time.Duration
			rounds := max(b.N, p.rounds)
			for r := range rounds {
				l, err := hc.WaitLeader(ctx)
				if err != nil {
					b.Fatal(err)
				}
				survivor := hc.Member((l + 1) % 3)
				if err := putValue(ctx, survivor, "warm", uint64(r)); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				hc.Crash(l)
				nl, err := hc.WaitLeader(ctx)
				if err != nil {
					b.Fatal(err)
				}
				elect = append(elect, time.Since(t0))
				if err := putValue(ctx, hc.Member(nl), "after", uint64(r)); err != nil {
					b.Fatal(err)
				}
				write = append(write, time.Since(t0))
				if err := hc.Restart(l); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(ms(percentile(elect, 0.5)), "ms/elect-p50")
			b.ReportMetric(ms(percentile(write, 0.5)), "ms/failover-p50")
			b.ReportMetric(ms(slices.Max(write)), "ms/failover-max")
		})
	}
}
