package ipmi_test

import (
	"testing"
	"time"

	"github.com/xenha/xenha/fence/internal/ipmisim"
	"github.com/xenha/xenha/fence/ipmi"
	"github.com/xenha/xenha/fence/ipmi/ipmitest"
)

// BenchmarkFence measures time to a proof (session, status, power-down,
// verify) against each simulated BMC; the host is powered back on between
// iterations, outside the timer.
func BenchmarkFence(b *testing.B) {
	b.Run("ipmi_sim-lanplus", func(b *testing.B) {
		sim := ipmisim.Start(b)
		f := newFencer(b, map[string]ipmi.Target{"h": simTarget(b, sim, ipmi.Lanplus, 3)})
		benchFence(b, f, func() { _ = sim.SetPowered(true) })
	})
	b.Run("ipmi_sim-lan", func(b *testing.B) {
		sim := ipmisim.Start(b)
		f := newFencer(b, map[string]ipmi.Target{"h": simTarget(b, sim, ipmi.Lan)})
		benchFence(b, f, func() { _ = sim.SetPowered(true) })
	})
	b.Run("inprocess-lanplus", func(b *testing.B) {
		g := startBMC(b)
		f := newFencer(b, map[string]ipmi.Target{"h": {Address: "127.0.0.1", Port: g.Port, User: ipmitest.User, PasswordFile: writePassword(b, g.Password)}})
		benchFence(b, f, func() { g.SetPower(true) })
	})
}

func benchFence(b *testing.B, f *ipmi.Fencer, powerOn func()) {
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		powerOn()
		b.StartTimer()
		start := time.Now()
		if _, err := f.Fence(b.Context(), "h"); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/fence")
}
