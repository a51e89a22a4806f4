package libvirt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/libvirt"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// lifecycleTimes accumulates per-operation wall time across iterations.
type lifecycleTimes struct {
	define, start, destroy, undefine time.Duration
}

func (lt *lifecycleTimes) run(b *testing.B, ctx context.Context, h xenctl.Hypervisor, name, xml string) {
	b.Helper()
	t0 := time.Now()
	if _, err := h.Define(ctx, xml); err != nil {
		b.Fatal(err)
	}
	t1 := time.Now()
	if err := h.Start(ctx, name); err != nil {
		b.Fatal(err)
	}
	t2 := time.Now()
	if err := h.Destroy(ctx, name); err != nil {
		b.Fatal(err)
	}
	t3 := time.Now()
	if err := h.Undefine(ctx, name); err != nil {
		b.Fatal(err)
	}
	t4 := time.Now()
	lt.define += t1.Sub(t0)
	lt.start += t2.Sub(t1)
	lt.destroy += t3.Sub(t2)
	lt.undefine += t4.Sub(t3)
}

func (lt *lifecycleTimes) report(b *testing.B) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 / float64(b.N) }
	b.ReportMetric(ms(lt.define), "ms/define")
	b.ReportMetric(ms(lt.start), "ms/start")
	b.ReportMetric(ms(lt.destroy), "ms/destroy")
	b.ReportMetric(ms(lt.undefine), "ms/undefine")
}

// BenchmarkTestDriverLifecycle measures xenha's overhead over libvirt's
// in-process test driver: define, start, destroy, undefine.
func BenchmarkTestDriverLifecycle(b *testing.B) {
	h := openTestHost(b)
	ctx := context.Background()
	var lt lifecycleTimes
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("bench-%d", i)
		uuid := fmt.Sprintf("4dea22b3-1d52-d8f3-2516-%012x", i)
		lt.run(b, ctx, h, name, xenctltest.DomainXML(name, uuid, 65536, 1))
	}
	lt.report(b)
}

// BenchmarkQEMU measures the diskless TCG guest (16 MiB) on two real libvirtd
// hosts on this machine: define, start, destroy, undefine on one host, and a
// live migration there and back (ms/migrate is one hop, from the call to the
// guest running on the destination, CPU check included).
func BenchmarkQEMU(b *testing.B) {
	needQEMUHosts(b)
	a, bh := startQEMUHost(b, "xenha-bench-a", 11), startQEMUHost(b, "xenha-bench-b", 12)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ha, err := libvirt.Open(ctx, a.uri)
	if err != nil {
		b.Fatal(err)
	}
	defer ha.Close()
	hb, err := libvirt.Open(ctx, bh.uri)
	if err != nil {
		b.Fatal(err)
	}
	defer hb.Close()
	dir := b.TempDir()
	kernel := filepath.Join(dir, "guest.mb")
	if err := os.WriteFile(kernel, guestKernel(), 0o644); err != nil {
		b.Fatal(err)
	}
	xml := guestXML(guestName, guestUUID, kernel, filepath.Join(dir, "console.log"), "")
	// Warm up: a fresh daemon probes QEMU's capabilities on its first
	// define, and a destination its CPU model on its first comparison; a
	// long-lived host pays that once, so the figures below leave it out.
	var warm lifecycleTimes
	warm.run(b, ctx, ha, guestName, xml)
	if _, err := ha.Define(ctx, xml); err != nil {
		b.Fatal(err)
	}
	if err := ha.Start(ctx, guestName); err != nil {
		b.Fatal(err)
	}
	for _, hop := range []struct {
		from *libvirt.Hypervisor
		to   string
	}{{ha, bh.uri}, {hb, a.uri}} {
		if err := hop.from.Migrate(ctx, guestName, xenctl.MigrateOptions{URI: hop.to, Address: "tcp://127.0.0.1", Persist: true}, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := ha.Destroy(ctx, guestName); err != nil {
		b.Fatal(err)
	}
	if err := ha.Undefine(ctx, guestName); err != nil {
		b.Fatal(err)
	}

	var lt lifecycleTimes
	var migrate time.Duration
	for b.Loop() {
		lt.run(b, ctx, ha, guestName, xml)
		if _, err := ha.Define(ctx, xml); err != nil {
			b.Fatal(err)
		}
		if err := ha.Start(ctx, guestName); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		opts := xenctl.MigrateOptions{URI: bh.uri, Address: "tcp://127.0.0.1", Persist: true}
		if err := ha.Migrate(ctx, guestName, opts, nil); err != nil {
			b.Fatal(err)
		}
		opts.URI = a.uri
		if err := hb.Migrate(ctx, guestName, opts, nil); err != nil {
			b.Fatal(err)
		}
		migrate += time.Since(t0) / 2
		if err := ha.Destroy(ctx, guestName); err != nil {
			b.Fatal(err)
		}
		if err := ha.Undefine(ctx, guestName); err != nil {
			b.Fatal(err)
		}
	}
	lt.report(b)
	b.ReportMetric(float64(migrate.Microseconds())/1e3/float64(b.N), "ms/migrate")
}
