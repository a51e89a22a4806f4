package nbd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func imageFile(t testing.TB, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// startProcess runs a server in the foreground until the test ends, and waits
// until it lists its exports.
func startProcess(t testing.TB, s testServer, name string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(s.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := ListExports(ctx, s.addr())
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, name+".log"))
			t.Fatalf("%s %v exited before serving: %s", name, args, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s did not answer NBD_OPT_LIST: %v", name, s.addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type nbdExport struct {
	name     string
	size     int64
	readOnly bool
}

// startNBDServer runs nbd-server -d with a config file in a temporary dir,
// on 127.0.0.1 and a free port, with file-backed exports.
func startNBDServer(t testing.TB, exports ...nbdExport) testServer {
	t.Helper()
	testenv.NeedBinary(t, "nbd-server")
	s := testServer{host: "127.0.0.1", port: freePort(t), dir: t.TempDir()}
	conf := fmt.Sprintf("[generic]\n\tlistenaddr = %s\n\tport = %d\n\tallowlist = true\n\tpidfile = %s\n",
		s.host, s.port, filepath.Join(s.dir, "nbd-server.pid"))
	for _, e := range exports {
		img := imageFile(t, s.dir, e.name+".img", e.size)
		conf += fmt.Sprintf("[%s]\n\texportname = %s\n\treadonly = %t\n", e.name, img, e.readOnly)
	}
	cf := filepath.Join(s.dir, "nbd-server.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, s, "nbd-server", "-C", cf, "-d")
	return s
}

// startQemuNBD runs qemu-nbd --persistent serving one raw file export.
func startQemuNBD(t testing.TB, e nbdExport) testServer {
	t.Helper()
	testenv.NeedBinary(t, "qemu-nbd")
	s := testServer{host: "127.0.0.1", port: freePort(t), dir: t.TempDir()}
	img := imageFile(t, s.dir, e.name+".img", e.size)
	args := []string{"--persistent", "-x", e.name, "--bind", s.host, "-p", strconv.Itoa(s.port), "-f", "raw", "--shared", "8"}
	if e.readOnly {
		args = append(args, "-r")
	}
	startProcess(t, s, "qemu-nbd", append(args, img)...)
	return s
}
