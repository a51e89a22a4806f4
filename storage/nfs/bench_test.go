package nfs_test

import (
	"context"
	"testing"
	"time"

	"github.com/xenha/xenha/storage/nfs"
)

// BenchmarkProbe measures the NFSv3 health probe against a real
// nfs-ganesha on loopback, through rpcbind (GETPORT ×2, MNT, NULL, LOOKUP,
// GETATTR, UMNT) and with the ports given (no rpcbind round trips).
func BenchmarkProbe(b *testing.B) {
	g := startGanesha(b)
	g.Disk(b, "vm1.img", 8<<20)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		opts []nfs.ProbeOption
	}{
		{"rpcbind", nil},
		{"ports", []nfs.ProbeOption{nfs.WithMountPort(g.MountPort), nfs.WithNFSPort(g.NFSPort)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				if _, err := nfs.Probe(ctx, "127.0.0.1", g.Export, "vm1.img", bc.opts...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/probe")
		})
	}
}
