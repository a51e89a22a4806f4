package ha_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

var overloadFor = flag.Duration("overload.duration", 60*time.Second, "how long each BenchmarkOverload case runs")

// BenchmarkOverload runs a 3-host pool (TCP, bbolt, 30 VMs) in which no host
// fails, while the process is CPU-starved and the disks stall, and counts
// what a healthy pool must never do: suspect a live host, fence it, or elect
// a leader after the first. The process gets one CPU (GOMAXPROCS=1) and 1
// (2×) or 3 (4×) goroutines that spin, so every member waits its turn
// behind them; one Raft log write in 50 stalls 50–250 ms first, like an
// fsync behind a busy disk. Each case runs -overload.duration (60 s).
func BenchmarkOverload(b *testing.B) {
	for _, p := range []struct {
		name string
		cfg  ha.Config
	}{{"Default", ha.DefaultConfig()}, {"FastLAN", ha.FastLAN()}} {
		for _, load := range []int{2, 4} {
			b.Run(fmt.Sprintf("%s/%dx", p.name, load), func(b *testing.B) {
				for range b.N {
					overload(b, p.cfg, load)
				}
			})
		}
	}
}

func overload(b *testing.B, profile ha.Config, load int) {
	stall := func() time.Duration {
		if rand.IntN(50) == 0 {
			return 50*time.Millisecond + rand.N(200*time.Millisecond)
		}
		return 0
	}
	w := hatest.NewWorld(b, 3, hatest.Profile(profile),
		hatest.ClusterOptions(hatest.WithTCP(), hatest.WithOptions(ha.WithSlowSync(stall))))
	ctx, cancel := context.WithTimeout(context.Background(), *overloadFor+5*time.Minute)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(30)...); err != nil {
		b.Fatal(err)
	}
	if _, err := w.WaitLeader(ctx); err != nil {
		b.Fatal(err)
	}
	// Count elections on every member from here on.
	var elections atomic.Int64
	sctx, stopSubs := context.WithCancel(ctx)
	var subs sync.WaitGroup
	for i := range w.N() {
		ch := w.Member(i).Subscribe(sctx)
		subs.Go(func() {
			for e := range ch {
				if e.Kind == ha.EventLeaderElected {
					elections.Add(1)
				}
			}
		})
	}
	before, start := w.State(), time.Now()

	prev := runtime.GOMAXPROCS(1)
	spin, stopSpin := context.WithCancel(ctx)
	var spinners sync.WaitGroup
	for range load - 1 {
		spinners.Go(func() {
			for spin.Err() == nil {
				for i := 0; i < 1_000_000; i++ {
				}
			}
		})
	}
	b.ResetTimer()
	time.Sleep(*overloadFor)
	b.StopTimer()
	stopSpin()
	spinners.Wait()
	runtime.GOMAXPROCS(prev)
	time.Sleep(profile.DeadTime) // a suspicion begun under load lands now
	stopSubs()
	subs.Wait()

	after := w.State()
	suspicions, fences := 0, len(after.Fences)-len(before.Fences)
	for _, inc := range after.Incidents {
		if inc.Opened.After(start) {
			suspicions++
		}
	}
	killed := 0
	for i := range w.N() {
		if w.Killed(w.ID(i)) {
			killed++
		}
	}
	b.ReportMetric(float64(suspicions), "suspicions")
	b.ReportMetric(float64(fences), "fences")
	b.ReportMetric(float64(elections.Load()), "elections")
	b.ReportMetric(float64(killed), "live-hosts-fenced")
	b.Logf("%v at %d×: %d suspicions, %d fences, %d elections of a new leader, %d live hosts powered off by a fence",
		*overloadFor, load, suspicions, fences, elections.Load(), killed)
}
