package ha_test

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
	"github.com/xenha/xenha/xenctl"
)

var (
	benchKills        = flag.Int("failover.kills", 20, "non-leader hosts killed per BenchmarkFailover/FastLAN run")
	benchLeaderKills  = flag.Int("failover.leader-kills", 20, "leaders killed per BenchmarkFailover/FastLAN run")
	benchDefaultKills = flag.Int("failover.default-kills", 3, "followers and leaders killed (each) per BenchmarkFailover/Default run")
	benchHosts        = flag.Int("failover.hosts", 3, "hosts in BenchmarkFailover's pool")
	benchVMs          = flag.Int("failover.vms", 30, "VMs in BenchmarkFailover's pool")
)

// BenchmarkFailover measures crash-to-running time: from a host's power-off
// to the moment every VM it ran executes on another host (seen by the fake
// hypervisors). 3 hosts, 30 VMs (-failover.hosts and -failover.vms change the
// pool), a fencing device that answers in 50 ms with a verified power-off.
// Non-leader and leader victims are reported apart: a leader's death adds an
// election. It also reports where the time goes, the mean of each incident
// phase (detect counts from the last renewal the leader applied, so it
// overlaps the time before the power-off by up to KeepAlive).
//
//	go test -run '^$' -bench BenchmarkFailover -benchtime 1x ./ha/
func BenchmarkFailover(b *testing.B) {
	b.Run("FastLAN", func(b *testing.B) { benchFailover(b, ha.FastLAN(), *benchKills, *benchLeaderKills) })
	b.Run("Default", func(b *testing.B) { benchFailover(b, ha.DefaultConfig(), *benchDefaultKills, *benchDefaultKills) })
}

func benchFailover(b *testing.B, profile ha.Config, kills, leaderKills int) {
	for range b.N {
		opts := []hatest.WorldOption{hatest.Profile(profile),
			hatest.FenceBehavior(fencetest.Succeed().WithLatency(50 * time.Millisecond))}
		// Room for every VM with one host down (testVMs: 512 MiB, 1 vCPU).
		cpus := max(16, 2**benchVMs/(*benchHosts-1))
		for i := range *benchHosts {
			opts = append(opts, hatest.HostSize(i, uint64(cpus)<<19, cpus))
		}
		w := hatest.NewWorld(b, *benchHosts, opts...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		vms := testVMs(*benchVMs)
		if err := w.AddVMs(ctx, vms...); err != nil {
			b.Fatal(err)
		}
		var follower, leader []time.Duration
		phases := map[string][]time.Duration{}
		for k := 0; k < kills+leaderKills; {
			l, err := w.WaitLeader(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if k >= kills && len(w.VMsOn(w.ID(l))) == 0 {
				// A revived host comes back empty: a leader with no VMs
				// has nothing to measure. Hand leadership on.
				if err := w.MakeFollower(ctx, l); err != nil {
					b.Fatal(err)
				}
				continue
			}
			victim := l
			if k < kills {
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
			if k < kills {
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
			// Every VM observed running before the next kill.
			if err := w.Wait(ctx, "every VM observed running", allObservedRunning); err != nil {
				b.Fatal(err)
			}
			addPhases(phases, w.State(), w.ID(victim), k < kills)
			if d > profile.DeadTime+3*time.Second {
				b.Logf("kill %d of %s took %v:\n%s", k, w.ID(victim), d, lastIncident(w.State(), w.ID(victim)))
			}
			k++
		}
		cancel()
		report(b, "failover", follower)
		report(b, "failover-leader", leader)
		for _, name := range slices.Sorted(maps.Keys(phases)) {
			b.ReportMetric(ms(mean(phases[name])), "ms/"+name+"-mean")
		}
	}
}

// allObservedRunning reports whether every VM of s is observed running on
// the host it is assigned to.
func allObservedRunning(s *ha.State) bool {
	for _, vm := range s.VMs {
		if vm.Host == "" || vm.Observed.Host != vm.Host || vm.Observed.State != xenctl.StateRunning {
			return false
		}
	}
	return true
}

// addPhases adds the phases of host's newest closed incident to phases,
// named "follower-detect", "leader-fence" and so on.
func addPhases(phases map[string][]time.Duration, s *ha.State, host string, follower bool) {
	role := "leader"
	if follower {
		role = "follower"
	}
	for i := len(s.Incidents) - 1; i >= 0; i-- {
		inc := s.Incidents[i]
		if inc.Host != host || inc.Closed.IsZero() {
			continue
		}
		for _, p := range inc.Phases {
			phases[role+"-"+p.Name] = append(phases[role+"-"+p.Name], p.Duration())
		}
		return
	}
}

// lastIncident renders host's newest incident in s.
func lastIncident(s *ha.State, host string) string {
	for i := len(s.Incidents) - 1; i >= 0; i-- {
		if inc := s.Incidents[i]; inc.Host == host {
			return inc.Timeline(true)
		}
	}
	return "no incident"
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(max(1, len(ds)))
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
	rank := func(q float64) time.Duration { // nearest rank
		return ds[max(0, int(math.Ceil(q*float64(len(ds))))-1)]
	}
	b.ReportMetric(ms(rank(0.5)), "ms/"+name+"-p50")
	b.ReportMetric(ms(rank(0.9)), "ms/"+name+"-p90")
	b.ReportMetric(ms(rank(0.99)), "ms/"+name+"-p99")
	b.ReportMetric(ms(ds[len(ds)-1]), "ms/"+name+"-max")
	b.Logf("%s over %d kills: %v", name, len(ds), ds)
}
