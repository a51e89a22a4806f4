package ha_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

var (
	benchKills       = flag.Int("failover.kills", 10, "non-leader hosts killed per BenchmarkFailover run")
	benchLeaderKills = flag.Int("failover.leader-kills", 4, "leaders killed per BenchmarkFailover run")
	benchHosts       = flag.Int("failover.hosts", 3, "hosts in BenchmarkFailover's pool")
	benchVMs         = flag.Int("failover.vms", 30, "VMs in BenchmarkFailover's pool")
)

// BenchmarkFailover measures crash-to-running time: from a host's power-off
// to the moment every VM it ran executes on another host (seen by the fake
// hypervisors). FastLAN profile, 3 hosts, 30 VMs (-failover.hosts and
// -failover.vms change the pool), a fencing device that
// answers in 50 ms. Non-leader and leader victims are reported apart: a
// leader's death adds an election, and the new leader counts ReassignAfter
// from its election.
//
//	go test -run '^$' -bench BenchmarkFailover -benchtime 1x ./ha/
func BenchmarkFailover(b *testing.B) {
	for range b.N {
		opts := []hatest.WorldOption{hatest.Profile(ha.FastLAN()),
			hatest.FenceBehavior(fencetest.Succeed().WithLatency(50 * time.Millisecond))}
		// Room for every VM with one host down (testVMs: 512 MiB, 1 vCPU).
		cpus := max(16, 2**benchVMs/(*benchHosts-1))
		for i := range *benchHosts {
			opts = append(opts, hatest.HostSize(i, uint64(cpus)<<19, cpus))
		}
		w := hatest.NewWorld(b, *benchHosts, opts...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		vms := testVMs(*benchVMs)
		if err := w.AddVMs(ctx, vms...); err != nil {
			b.Fatal(err)
		}
		var follower, leader []time.Duration
		for k := range *benchKills + *benchLeaderKills {
			l, err := w.WaitLeader(ctx)
			if err != nil {
				b.Fatal(err)
			}
			victim := l
			if k < *benchKills {
				// The follower running the most VMs (victims come back empty).
				best := -1
				for i := range *benchHosts {
					if i != l && (best < 0 || len(w.VMsOn(w.ID(i))) > len(w.VMsOn(w.ID(best)))) {
						best = i
					}
				}
				victim = best
			}
			d, err := killAndMeasure(ctx, w, victim)
			if err != nil {
				b.Fatal(err)
			}
			if k < *benchKills {
				follower = append(follower, d)
			} else {
				leader = append(leader, d)
			}
			if err := w.Revive(victim); err != nil {
				b.Fatal(err)
			}
			if err := w.WaitHosts(ctx); err != nil {
				b.Fatal(err)
			}
		}
		cancel()
		report(b, "failover", follower)
		report(b, "failover-leader", leader)
	}
}

// killAndMeasure powers host i off and returns how long until all its VMs
// execute elsewhere.
func killAndMeasure(ctx context.Context, w *hatest.World, i int) (time.Duration, error) {
	id := w.ID(i)
	var victims []string
	for _, vm := range testVMs(*benchVMs) {
		if slices.Contains(w.RunningOn(vm.Name), id) {
			victims = append(victims, vm.Name)
		}
	}
	start := time.Now()
	w.Kill(i)
	for {
		done := true
		for _, vm := range victims {
			on := w.RunningOn(vm)
			if len(on) != 1 || on[0] == id {
				done = false
				break
			}
		}
		if done {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("VMs of %s not recovered: %w\n%s", id, ctx.Err(), w.Describe())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func report(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	rank := func(q float64) time.Duration { // nearest rank
		return ds[max(0, int(math.Ceil(q*float64(len(ds))))-1)]
	}
	b.ReportMetric(ms(rank(0.5)), "ms/"+name+"-p50")
	b.ReportMetric(ms(rank(0.9)), "ms/"+name+"-p90")
	b.ReportMetric(ms(ds[len(ds)-1]), "ms/"+name+"-max")
	b.Logf("%s over %d kills: %v", name, len(ds), ds)
}
