package iscsi_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
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
		bad := func(id string, k, v string) storage.Volume {
			x := tgtVolume(g.Portal, iqn)
			x.ID = id
			x.Params = map[string]string{}
			for kk, vv := range vol.Params {
				x.Params[kk] = vv
			}
			if v == "" {
				delete(x.Params, k)
			} else {
				x.Params[k] = v
			}
			return x
		}
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
	qemuImg := testenv.NeedBinary(t, "qemu-img")
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
	out, err := exec.CommandContext(ctxT(t), qemuImg, "info", url).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "Unknown protocol") {
			testenv.Absent(t, "qemu-img has no iscsi driver (install qemu-block-extra): %s", out)
		}
		t.Fatalf("qemu-img info %s: %v\n%s", url, err, out)
	}
	if !strings.Contains(string(out), "(25165824 bytes)") {
		t.Fatalf("qemu-img info %s does not report the LUN's 24 MiB:\n%s", url, out)
	}
}
