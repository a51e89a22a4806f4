package nfs_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
)

// ganesha is a real nfs-ganesha (FSAL VFS, NFSv3 over TCP) the test started,
// exporting a TempDir on loopback with its own NFS and MOUNT ports.
type ganesha struct {
	Export    string // the exported directory, also its NFSv3 mount path
	NFSPort   int
	MountPort int
	proc      *os.Process
	rpcbind   *testenv.Process // the one this test started, if any
}

// Freeze stops ganesha (SIGSTOP) until the returned function resumes it:
// connections still complete in the kernel, answers never come, as with a
// hung NFS server.
func (g *ganesha) Freeze(t testing.TB) (thaw func()) {
	if err := g.proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	return func() { _ = g.proc.Signal(syscall.SIGCONT) }
}

// startGanesha needs rpcbind on 111: ganesha registers there, and so do
// qemu's libnfs and the probe look there. An rpcbind already running is
// used and left alone; otherwise the test starts one and stops it.
func startGanesha(t testing.TB) *ganesha {
	t.Helper()
	testenv.NeedRoot(t)
	bin := testenv.NeedBinary(t, "ganesha.nfsd")
	testenv.NeedBinary(t, "rpcinfo")
	rpcb := ensureRpcbind(t)
	dir := t.TempDir()
	g := &ganesha{rpcbind: rpcb, Export: filepath.Join(dir, "export"), NFSPort: testenv.FreePort(t), MountPort: testenv.FreePort(t)}
	if err := os.Mkdir(g.Export, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`NFS_CORE_PARAM {
	NFS_Port = %d;
	MNT_Port = %d;
	Bind_addr = 127.0.0.1;
	Protocols = 3;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Enable_UDP = false;
}
NFSV4 { Graceless = true; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
	Export_Id = 1;
	Path = %q;
	Pseudo = %q;
	Access_Type = RW;
	Squash = no_root_squash;
	Protocols = 3;
	Transports = TCP;
	SecType = sys;
	FSAL { Name = VFS; }
}
`, g.NFSPort, g.MountPort, g.Export, g.Export)
	confPath := filepath.Join(dir, "ganesha.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// A ganesha that did not stop cleanly (SIGINT, SIGKILL, a crash) leaves
	// its rpcbind registrations behind, pointing at dead ports: clear them
	// before and after, so a probe through rpcbind never meets stale ones.
	unregister := func() {
		for _, pv := range [][2]string{{"100003", "3"}, {"100003", "4"}, {"100005", "1"}, {"100005", "3"}} {
			_ = exec.Command("rpcinfo", "-d", pv[0], pv[1]).Run()
		}
	}
	unregister()
	t.Cleanup(unregister)
	// -L STDERR: ganesha's log joins its output in the Process log.
	cmd := exec.Command(bin, "-F", "-L", "STDERR", "-f", confPath, "-p", filepath.Join(dir, "ganesha.pid"))
	// SIGTERM unregisters from rpcbind; SIGINT does not.
	p := testenv.StartProcess(t, cmd, filepath.Join(dir, "ganesha.log"), syscall.SIGTERM, 10*time.Second)
	g.proc = cmd.Process
	for _, port := range []int{g.NFSPort, g.MountPort} {
		p.WaitListening(t, "127.0.0.1:"+strconv.Itoa(port), 20*time.Second)
	}
	g.waitRegistered(t, p)
	return g
}

// waitRegistered waits until rpcbind maps MOUNT v3 and NFS v3 to g's ports:
// ganesha listens a moment before it registers, and a probe in that moment
// finds no MOUNT program.
func (g *ganesha) waitRegistered(t testing.TB, p *testenv.Process) {
	t.Helper()
	want := []string{
		fmt.Sprintf("100005 3 tcp %d", g.MountPort),
		fmt.Sprintf("100003 3 tcp %d", g.NFSPort),
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := exec.Command("rpcinfo", "-p", "127.0.0.1").CombinedOutput()
		lines := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			// program, version, protocol, port, then the service's name
			if f := strings.Fields(l); len(f) >= 4 {
				lines[strings.Join(f[:4], " ")] = true
			}
		}
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return lines[w] })
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ganesha did not register %v with rpcbind within 20 s; rpcinfo -p:\n%s\nits log (%s):\n%s%s", missing, out, p.LogPath, p.Log(), g.rpcbindLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Disk creates a sparse image of size bytes in the export.
func (g *ganesha) Disk(t testing.TB, name string, size int64) string {
	t.Helper()
	p := filepath.Join(g.Export, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	return testenv.SparseFile(t, p, size)
}

// rpcbindLog is the debug log of the rpcbind the test started, if it
// started one.
func (g *ganesha) rpcbindLog() string {
	if g.rpcbind == nil {
		return "\n(rpcbind was already running: its log is not the test's)"
	}
	return fmt.Sprintf("\nrpcbind's log (%s):\n%s", g.rpcbind.LogPath, g.rpcbind.Log())
}

// ensureRpcbind starts rpcbind (in debug mode, so that a refusal says why
// in its log) unless one already listens; it returns the one it started.
func ensureRpcbind(t testing.TB) *testenv.Process {
	t.Helper()
	if testenv.Listening("127.0.0.1:111") {
		// Services register through rpcbind's socket, so one that
		// listens but has no socket here (it runs in another mount
		// namespace, or a chroot's /run) cannot take ganesha's ports.
		if _, err := os.Stat("/run/rpcbind.sock"); err != nil {
			t.Fatalf("an rpcbind listens on port 111 but /run/rpcbind.sock is missing (%v): it runs in another mount namespace or root; stop it, or run the test where it runs", err)
		}
		return nil
	}
	bin := testenv.NeedBinary(t, "rpcbind")
	// Its warm-start state directory, which boot makes (tmpfiles.d).
	if err := os.MkdirAll("/run/rpcbind", 0o755); err != nil {
		t.Fatalf("rpcbind's state directory: %v", err)
	}
	p := testenv.StartProcess(t, exec.Command(bin, "-f", "-d"), filepath.Join(t.TempDir(), "rpcbind.log"), syscall.SIGINT, 5*time.Second)
	p.WaitListening(t, "127.0.0.1:111", 5*time.Second)
	return p
}

func ctxT(t testing.TB) context.Context { return testenv.Context(t, 20*time.Second) }
