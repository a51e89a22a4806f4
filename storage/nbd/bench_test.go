package nbd

import (
	"context"
	"testing"
	"time"
)

func benchProbe(b *testing.B, addr, export string) {
	ctx := context.Background()
	if _, err := ExportInfo(ctx, addr, export); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := ExportInfo(ctx, addr, export); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/probe")
}

// BenchmarkProbeQemuNBD measures one health probe (connect, handshake,
// NBD_OPT_INFO, abort) against a real qemu-nbd on loopback.
func BenchmarkProbeQemuNBD(b *testing.B) {
	s := startQemuNBD(b, nbdExport{name: "vm1", size: 1 << 20})
	benchProbe(b, s.addr(), "vm1")
}

// BenchmarkProbeNBDServer is the same against nbd-server.
func BenchmarkProbeNBDServer(b *testing.B) {
	s := startNBDServer(b, nbdExport{name: "vm1", size: 1 << 20})
	benchProbe(b, s.addr(), "vm1")
}
