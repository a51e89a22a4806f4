package sbd_test

import (
	"testing"
	"time"

	"github.com/xenha/xenha/fence/sbd"
)

// BenchmarkFence measures time to a proof with a 50 ms msgwait on a file:
// the figure is msgwait plus the pill's write, read-back and device open.
func BenchmarkFence(b *testing.B) {
	path := b.TempDir() + "/sbd.img"
	h := sbd.Header{Slots: 2, Loop: 5 * time.Millisecond, Watchdog: 40 * time.Millisecond, MsgWait: 50 * time.Millisecond}
	if err := writeEmpty(path); err != nil {
		b.Fatal(err)
	}
	d, err := sbd.Create(b.Context(), path, h, "a", "b")
	if err != nil {
		b.Fatal(err)
	}
	d.Close()
	f, _ := sbd.New("a", map[string][]string{"b": {path}})
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := f.Fence(b.Context(), "b"); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/fence")
	b.ReportMetric(float64((total-time.Duration(b.N)*h.MsgWait).Microseconds())/1000/float64(b.N), "ms/io-overhead")
}
