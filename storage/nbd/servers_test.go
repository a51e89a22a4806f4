package nbd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
)

// testServer is a real NBD server process started by a test.
type testServer struct {
	host string
	port int
	dir  string
}

func (s testServer) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

func (s testServer) params(export string) map[string]string {
	return map[string]string{"server": s.host, "port": strconv.Itoa(s.port), "export": export}
}

func imageFile(t testing.TB, dir, name string, size int64) string {
	return testenv.SparseFile(t, filepath.Join(dir, name), size)
}

// startProcess runs a server in the foreground until the test ends, and waits
// until it lists its exports.
func startProcess(t testing.TB, s testServer, name string, args ...string) {
	t.Helper()
	p := testenv.StartProcess(t, exec.Command(name, args...), filepath.Join(s.dir, name+".log"), syscall.SIGKILL, 0)
	waitServing(t, s, p.Exited)
}

func waitPidfile(t testing.TB, path string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no PID in %s: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stopPID terminates a daemon this test started and waits until it is gone.
func stopPID(pid int) {
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 500 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// waitServing waits until the server lists its exports, failing the test if
// gone reports that it exited.
func waitServing(t testing.TB, s testServer, gone func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := ListExports(ctx, s.addr())
		cancel()
		if err == nil {
			return
		}
		lastErr = err
		if gone() {
			t.Fatalf("NBD server on %s exited before serving (last probe: %v); see the logs in %s", s.addr(), lastErr, s.dir)
		}
		if time.Now().After(deadline) {
			t.Fatalf("NBD server on %s did not answer NBD_OPT_LIST: %v", s.addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type nbdExport struct {
	name     string
	size     int64
	readOnly bool
}

// startNBDServer runs nbd-server with a config file in a temporary dir,
// on 127.0.0.1 and a free port, with file-backed exports.
func startNBDServer(t testing.TB, exports ...nbdExport) testServer {
	t.Helper()
	testenv.NeedBinary(t, "nbd-server")
	s := testServer{host: "127.0.0.1", port: testenv.FreePort(t), dir: t.TempDir()}
	conf := fmt.Sprintf("[generic]\n\tlistenaddr = %s\n\tport = %d\n\tallowlist = true\n", s.host, s.port)
	for _, e := range exports {
		img := imageFile(t, s.dir, e.name+".img", e.size)
		conf += fmt.Sprintf("[%s]\n\texportname = %s\n\treadonly = %t\n", e.name, img, e.readOnly)
	}
	cf := filepath.Join(s.dir, "nbd-server.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// Not -d: nbd-server -d serves each client in its only process and dies
	// (SIGPIPE, or "Negotiation failed ... Exiting") when any client goes
	// away early, and on a shared machine other tests dial ports that they
	// believe free. The forking daemon loses only that client's child. It
	// writes its PID to the pidfile; Cleanup stops it by that PID.
	out, err := exec.Command("nbd-server", "-C", cf, "-p", filepath.Join(s.dir, "nbd-server.pid")).CombinedOutput()
	if err != nil {
		t.Fatalf("nbd-server -C %s: %v\n%s", cf, err, out)
	}
	pid := waitPidfile(t, filepath.Join(s.dir, "nbd-server.pid"))
	t.Cleanup(func() { stopPID(pid) })
	waitServing(t, s, func() bool { return syscall.Kill(pid, 0) != nil })
	return s
}

// startQemuNBD runs qemu-nbd --persistent serving one raw file export.
func startQemuNBD(t testing.TB, e nbdExport) testServer {
	t.Helper()
	testenv.NeedBinary(t, "qemu-nbd")
	s := testServer{host: "127.0.0.1", port: testenv.FreePort(t), dir: t.TempDir()}
	img := imageFile(t, s.dir, e.name+".img", e.size)
	args := []string{"--persistent", "-x", e.name, "--bind", s.host, "-p", strconv.Itoa(s.port), "-f", "raw", "--shared", "8"}
	if e.readOnly {
		args = append(args, "-r")
	}
	startProcess(t, s, "qemu-nbd", append(args, img)...)
	return s
}
