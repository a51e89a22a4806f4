package agent_test

import (
	"testing"
	"time"

	"github.com/xenha/xenha/fence/agent"
	"github.com/xenha/xenha/fence/internal/ipmisim"
	"github.com/xenha/xenha/internal/testenv"
)

// BenchmarkFenceIPMILan measures time to a proof with the real fence_ipmilan
// (off, then status) against ipmi_sim.
func BenchmarkFenceIPMILan(b *testing.B) {
	testenv.NeedBinary(b, "fence_ipmilan")
	sim := ipmisim.Start(b)
	f, err := agent.New(map[string]agent.Target{"h": ipmilanTarget(b, sim)})
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		_ = sim.SetPowered(true)
		b.StartTimer()
		start := time.Now()
		if _, err := f.Fence(b.Context(), "h"); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/fence")
}
