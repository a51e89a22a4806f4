package storagetest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
)

// QEMUImgSize opens target the way a VM's QEMU would open a disk and returns
// its virtual size in bytes, as `qemu-img info` reports it. target is a path,
// a URL built from a storage.Source (nbd://, iscsi://, nfs://) or a json:
// block spec. It proves that the Source an Attach returns is one QEMU opens,
// which the conformance suite cannot check by itself.
//
// Without qemu-img, or with a qemu-img that lacks the protocol's driver
// (Debian's qemu-block-extra), the test is skipped (failed under CI=true);
// any other failure to open target fails it.
func QEMUImgSize(t testing.TB, target string) int64 {
	t.Helper()
	qemuImg := testenv.NeedBinary(t, "qemu-img")
	ctx := testenv.Context(t, 20*time.Second)
	out, err := exec.CommandContext(ctx, qemuImg, "info", "--output=json", target).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "Unknown protocol") {
			// The reason names the protocol, not the target, so that the
			// skips of every test it holds back count as one.
			proto, _, _ := strings.Cut(target, ":")
			testenv.Absent(t, "qemu-img has no driver for %s:// (Debian package qemu-block-extra); %s", proto, testenv.Install("qemu-block-extra"))
		}
		t.Fatalf("qemu-img info %s: %v\n%s", target, err, out)
	}
	var info struct {
		VirtualSize *int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.VirtualSize == nil {
		t.Fatalf("qemu-img info %s: no virtual-size in its JSON (%v):\n%s", target, err, out)
	}
	return *info.VirtualSize
}
