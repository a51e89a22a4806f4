package iscsi_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
)

// tgt is a real tgtd the test started: its own control port (so several
// test processes and a system tgtd can coexist) and a portal on loopback.
type tgt struct {
	t       testing.TB
	control string
	Portal  string
	Dir     string
	proc    *os.Process
}

// Freeze stops tgtd (SIGSTOP) until the returned function resumes it: a
// target that accepts connections (the kernel completes the handshake) and
// never answers, as a hung storage server does.
func (g *tgt) Freeze() (thaw func()) {
	if err := g.proc.Signal(syscall.SIGSTOP); err != nil {
		g.t.Fatal(err)
	}
	return func() { _ = g.proc.Signal(syscall.SIGCONT) }
}

var controlSeq atomic.Int32

// startTgtd runs `tgtd -f` bound to 127.0.0.1 on a free port and stops it
// when the test ends.
func startTgtd(t testing.TB) *tgt {
	t.Helper()
	testenv.NeedRoot(t)
	bin := testenv.NeedBinary(t, "tgtd")
	testenv.NeedBinary(t, "tgtadm")
	port := testenv.FreePort(t)
	// The control port only names the management socket
	// (/var/run/tgtd/socket.N); keep it unique per process and test.
	// tgtd accepts control ports up to 32767.
	control := strconv.Itoa(1000 + (os.Getpid()*7+int(controlSeq.Add(1)))%30000)
	dir := t.TempDir()
	// Runs after the process is stopped (cleanups run last first).
	t.Cleanup(func() {
		for _, f := range []string{"/var/run/tgtd/socket." + control, "/var/run/tgtd/socket." + control + ".lock"} {
			_ = os.Remove(f)
		}
	})
	// tgtd ignores SIGTERM and SIGINT, and an orderly "tgtadm --op delete
	// --mode system" waits for sessions to drain; its state lives in memory
	// and the LUN files in TempDir, so SIGKILL loses nothing.
	cmd := exec.Command(bin, "-f", "-C", control, "--iscsi", "portal=127.0.0.1:"+strconv.Itoa(port))
	p := testenv.StartProcess(t, cmd, filepath.Join(dir, "tgtd.log"), syscall.SIGKILL, 0)
	g := &tgt{t: t, control: control, Portal: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, proc: cmd.Process}
	p.WaitListening(t, g.Portal, 10*time.Second)
	// Targets are added through tgtadm, so it must answer too.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := g.adm("--mode", "target", "--op", "show")
		if err == nil {
			break
		}
		if p.Exited() {
			t.Fatalf("tgtd exited at start-up:\n%s", p.Log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("tgtd on %s did not answer tgtadm: %v\n%s", g.Portal, err, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return g
}

func (g *tgt) adm(args ...string) (string, error) {
	full := append([]string{"-C", g.control, "--lld", "iscsi"}, args...)
	out, err := exec.Command("tgtadm", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tgtadm %s: %v: %s", strings.Join(full, " "), err, out)
	}
	return string(out), nil
}

// AddTarget creates target tid named iqn with LUN 1 backed by a sparse file
// of size bytes, open to every initiator, and returns the file's path.
func (g *tgt) AddTarget(tid int, iqn string, size int64) string {
	g.t.Helper()
	img := testenv.SparseFile(g.t, filepath.Join(g.Dir, fmt.Sprintf("lun-%d.img", tid)), size)
	id := strconv.Itoa(tid)
	for _, args := range [][]string{
		{"--mode", "target", "--op", "new", "--tid", id, "--targetname", iqn},
		{"--mode", "logicalunit", "--op", "new", "--tid", id, "--lun", "1", "--backing-store", img},
		{"--mode", "target", "--op", "bind", "--tid", id, "--initiator-address", "ALL"},
	} {
		if _, err := g.adm(args...); err != nil {
			g.t.Fatal(err)
		}
	}
	return img
}

// closedPort is a loopback portal that refuses connections.
func closedPort(t testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(testenv.ClosedPort(t))
}

func ctxT(t testing.TB) context.Context { return testenv.Context(t, 20*time.Second) }
