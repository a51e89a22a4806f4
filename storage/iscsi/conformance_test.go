package iscsi_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/iscsi"
	"github.com/xenha/xenha/storage/storagetest"
)

func tgtVolume(portal, iqn string) storage.Volume {
	return storage.Volume{ID: "vm1-disk0", Kind: iscsi.Kind, Params: map[string]string{
		iscsi.ParamPortal: portal, iscsi.ParamIQN: iqn, iscsi.ParamLUN: "1",
	}}
}

// TestConformanceNetworkDisk runs the storage.Backend suite on two simulated
// hosts sharing a LUN of a real tgtd. Network-disk mode cannot make the
// target refuse the old host (QEMU's own initiator does the I/O), so it
// promises stale-generation refusal on each host, not Exclusive.
func TestConformanceNetworkDisk(t *testing.T) {
	g := startTgtd(t)
	const iqn = "iqn.2026-11.test.xenha:conformance"
	g.AddTarget(1, iqn, 16<<20)
	storagetest.Run(t, func(t *testing.T) storagetest.Subject {
		vol := tgtVolume(g.Portal, iqn)
		missing := tgtVolume(g.Portal, iqn+"-gone")
		missing.ID = "missing"
		bad := func(id, k, v string) storage.Volume { return storagetest.WithParam(vol, id, k, v) }
		return storagetest.Subject{
			A:       iscsi.New("host-a"),
			B:       iscsi.New("host-b"),
			Volume:  vol,
			Missing: missing,
			Invalid: []storage.Volume{
				bad("no-portal", iscsi.ParamPortal, ""),
				bad("no-lun", iscsi.ParamLUN, ""),
				bad("bad-lun", iscsi.ParamLUN, "-1"),
				bad("bad-iqn", iscsi.ParamIQN, "--login"),
				bad("bad-port", iscsi.ParamPortal, "127.0.0.1:99999"),
				{ID: "wrong-kind", Kind: "nfs", Params: vol.Params},
			},
			StaleGenerations: true,
		}
	})
}

// TestQEMUOpensNetworkSource proves the source Attach returns is one QEMU
// opens: qemu-img (with qemu-block-extra's libiscsi driver) reads the LUN's
// size through the URL built from it.
func TestQEMUOpensNetworkSource(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img") // before starting tgtd for nothing
	g := startTgtd(t)
	const iqn = "iqn.2026-11.test.xenha:qemu"
	g.AddTarget(1, iqn, 24<<20)
	b := iscsi.New("host-a")
	vol := tgtVolume(g.Portal, iqn)
	vol.Generation = 1
	src, err := b.Attach(ctxT(t), vol)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Detach(context.Background(), vol)
	url := fmt.Sprintf("iscsi://%s:%d/%s", src.Hosts[0].Host, src.Hosts[0].Port, src.Name)
	if size := storagetest.QEMUImgSize(t, url); size != 24<<20 {
		t.Fatalf("qemu-img info %s reports %d bytes, not the LUN's 24 MiB", url, size)
	}
}

// TestConformanceHostLogin runs the suite on the HostLogin backend of two
// simulated hosts, each with iscsiadm and sg_persist played by a stand-in
// over its own initiator to a real tgtd (this kernel has no initiator).
// The target enforces the reservations, so the subject promises Exclusive:
// after host B takes over at a newer generation, the target refuses host A.
func TestConformanceHostLogin(t *testing.T) {
	g := startTgtd(t)
	tid := 0
	storagetest.Run(t, func(t *testing.T) storagetest.Subject {
		// A fresh target per check: reservations outlive sessions.
		tid++
		iqn := fmt.Sprintf("iqn.2026-11.test.xenha:host-login-%d", tid)
		g.AddTarget(tid, iqn, 4<<20)
		sa, sb := newStandIn("host-a", g.Portal), newStandIn("host-b", g.Portal)
		t.Cleanup(sa.close)
		t.Cleanup(sb.close)
		a := iscsi.New("host-a", iscsi.WithMode(iscsi.HostLogin), iscsi.WithRunner(sa))
		b := iscsi.New("host-b", iscsi.WithMode(iscsi.HostLogin), iscsi.WithRunner(sb))
		vol := tgtVolume(g.Portal, iqn)
		missing := tgtVolume(g.Portal, iqn+"-gone")
		missing.ID = "missing"
		missing.Generation = 1 // 0 is no reservation key: ErrInvalidVolume in this mode
		invalid := tgtVolume(g.Portal, "not-an-iqn")
		invalid.ID = "invalid"
		return storagetest.Subject{
			A: a, B: b, Volume: vol, Missing: missing,
			Invalid:          []storage.Volume{invalid},
			StaleGenerations: true,
			Exclusive:        true,
			Write: func(ctx context.Context, on storage.Backend, v storage.Volume) error {
				s := sa
				if on == b {
					s = sb
				}
				err := s.write(ctx, iqn)
				if errors.Is(err, storage.ErrInUse) {
					// The target refused a host whose key a newer
					// generation preempted: that host's generation is
					// stale, which is what the suite asks of the write.
					return fmt.Errorf("%w: %w", storage.ErrStaleGeneration, err)
				}
				return err
			},
		}
	})
}
