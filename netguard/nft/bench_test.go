package nft_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/netguard"
)

const benchVIFs = 1000

// seedVIFs is how many VIFs the seeds' approach switches: 1,000 by default,
// which takes minutes (about 4,000 commands, plus 2,000 to set up);
// XENHA_BENCH_SEED_VIFS lowers it for a quicker, smaller comparison.
func seedVIFs(b *testing.B) int {
	v := os.Getenv("XENHA_BENCH_SEED_VIFS")
	if v == "" {
		return benchVIFs
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("XENHA_BENCH_SEED_VIFS=%q: want a positive number", v)
	}
	return n
}

// BenchmarkSwitch1000VIFs measures what a failover costs the network side:
// 1,000 VIFs go from blocked to allowed. "nftables" is one Apply of this
// package (one atomic batch); "seed-iptables+arptables" is the seeds'
// approach scaled to per-VIF control: iptables FORWARD physdev rules plus
// arptables FORWARD rules, one DROP per VIF and direction, removed by one
// command each, as the seeds' init script runs them.
func BenchmarkSwitch1000VIFs(b *testing.B) {
	b.Run("nftables", func(b *testing.B) {
		l := newLab(b, 0)
		g := l.guard()
		blocked, allowed := manyVIFs(benchVIFs, false), manyVIFs(benchVIFs, true)
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			if err := g.Apply(b.Context(), blocked); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			if err := g.Apply(b.Context(), allowed); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/switch-1000")
	})
	b.Run("seed-iptables+arptables", func(b *testing.B) {
		ipt := testenv.NeedBinary(b, "iptables-legacy")
		arpt := testenv.NeedBinary(b, "arptables-legacy")
		n := seedVIFs(b)
		l := newLab(b, 0)
		// The rules, set up untimed: iptables through restore (one call),
		// arptables by command (its legacy restore cannot read FORWARD).
		var restore strings.Builder
		restore.WriteString("*filter\n:FORWARD ACCEPT [0:0]\n")
		for i := range n {
			fmt.Fprintf(&restore, "-A FORWARD -m physdev --physdev-in vif%d.0 -j DROP\n", i+1)
			fmt.Fprintf(&restore, "-A FORWARD -m physdev --physdev-out vif%d.0 -j DROP\n", i+1)
		}
		restore.WriteString("COMMIT\n")
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			cmd := exec.Command("ip", "netns", "exec", l.host, ipt+"-restore")
			cmd.Stdin = strings.NewReader(restore.String())
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("iptables-legacy-restore: %v\n%s", err, out)
			}
			for i := range n {
				for _, dir := range []string{"-i", "-o"} {
					l.run("ip", "netns", "exec", l.host, arpt, "-A", "FORWARD", dir, fmt.Sprintf("vif%d.0", i+1), "-j", "DROP")
				}
			}
			b.StartTimer()
			start := time.Now()
			for i := range n {
				vif := fmt.Sprintf("vif%d.0", i+1)
				l.run("ip", "netns", "exec", l.host, ipt, "-D", "FORWARD", "-m", "physdev", "--physdev-in", vif, "-j", "DROP")
				l.run("ip", "netns", "exec", l.host, ipt, "-D", "FORWARD", "-m", "physdev", "--physdev-out", vif, "-j", "DROP")
				l.run("ip", "netns", "exec", l.host, arpt, "-D", "FORWARD", "-i", vif, "-j", "DROP")
				l.run("ip", "netns", "exec", l.host, arpt, "-D", "FORWARD", "-o", vif, "-j", "DROP")
			}
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), fmt.Sprintf("ms/switch-%d", n))
	})
}

// BenchmarkCurrent1000VIFs: reading back a 1,000-VIF table (what a
// controller does to reconcile after a restart).
func BenchmarkCurrent1000VIFs(b *testing.B) {
	l := newLab(b, 0)
	g := l.guard()
	if err := g.Apply(b.Context(), manyVIFs(benchVIFs, true)); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for b.Loop() {
		if _, err := g.Current(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1e3/float64(b.N), "ms/current-1000")
}

// BenchmarkWholeHostSwitch: the seeds' own use, a passive host turning
// active. The seed replaces its one DROP rule in iptables and in arptables
// (two commands, no per-VM control); the guard applies AllowAll over 1,000
// guarded VIFs (one batch).
func BenchmarkWholeHostSwitch(b *testing.B) {
	b.Run("nftables", func(b *testing.B) {
		l := newLab(b, 0)
		g := l.guard()
		passive := manyVIFs(benchVIFs, true)
		passive.Mode = netguard.BlockAll
		active := manyVIFs(benchVIFs, true)
		active.Mode = netguard.AllowAll
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			if err := g.Apply(b.Context(), passive); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			if err := g.Apply(b.Context(), active); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/switch-host")
	})
	b.Run("seed-iptables+arptables", func(b *testing.B) {
		ipt := testenv.NeedBinary(b, "iptables-legacy")
		arpt := testenv.NeedBinary(b, "arptables-legacy")
		l := newLab(b, 0)
		// The seeds' rule set: dom0's vif0.0 and vif0.1 accepted, then DROP.
		for i, p := range []string{"vif0.0", "vif0.1"} {
			for j, dir := range []string{"in", "out"} {
				pos := fmt.Sprint(2*i + j + 1)
				l.run("ip", "netns", "exec", l.host, ipt, "-I", "FORWARD", pos, "-m", "physdev", "--physdev-"+dir, p, "-j", "ACCEPT")
				l.run("ip", "netns", "exec", l.host, arpt, "-I", "FORWARD", pos, "-"+dir[:1], p, "-j", "ACCEPT")
			}
		}
		l.run("ip", "netns", "exec", l.host, ipt, "-I", "FORWARD", "5", "-j", "DROP")
		l.run("ip", "netns", "exec", l.host, arpt, "-I", "FORWARD", "5", "-j", "DROP")
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			l.run("ip", "netns", "exec", l.host, ipt, "-R", "FORWARD", "5", "-j", "DROP")
			l.run("ip", "netns", "exec", l.host, arpt, "-R", "FORWARD", "5", "-j", "DROP")
			b.StartTimer()
			start := time.Now()
			l.run("ip", "netns", "exec", l.host, ipt, "-R", "FORWARD", "5")
			l.run("ip", "netns", "exec", l.host, arpt, "-R", "FORWARD", "5")
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/switch-host")
	})
}
