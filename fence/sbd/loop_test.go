package sbd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenha/xenha/fence/sbd"
	"github.com/xenha/xenha/internal/testenv"
)

// loopDevice attaches a fresh 1 MiB image to a loop device (detached when
// the test ends) so the pill goes through the block layer with O_DIRECT.
func loopDevice(t *testing.T) string {
	testenv.NeedRoot(t)
	losetup := testenv.NeedBinary(t, "losetup")
	testenv.NeedFile(t, "/dev/loop-control", "the kernel's loop device driver; load it with 'modprobe loop'")
	img := filepath.Join(t.TempDir(), "sbd-loop.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(losetup, "--find", "--show", "--direct-io=on", img).CombinedOutput()
	if err != nil {
		// Some kernels refuse direct I/O on the backing file; the device
		// still takes O_DIRECT from us.
		out, err = exec.Command(losetup, "--find", "--show", img).CombinedOutput()
	}
	if err != nil {
		testenv.Absent(t, "losetup could not attach a loop device: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

func TestLoopDevice(t *testing.T) {
	dev := loopDevice(t)
	d, err := sbd.Create(t.Context(), dev, testHeader, "host-a", "host-b")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	v := startVictim(t, dev, "host-b")
	f, err := sbd.New("host-a", map[string][]string{"host-b": {dev}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Fence(t.Context(), "host-b")
	if err != nil {
		t.Fatal(err)
	}
	if !v.isDown() {
		t.Fatalf("proof %v but the victim on %s still runs", p, dev)
	}
	if !strings.Contains(p.Evidence, dev) {
		t.Fatalf("evidence %q should name %s", p.Evidence, dev)
	}
}

func TestConformanceLoopDevice(t *testing.T) {
	fencetestRun(t, loopDevice(t))
}
