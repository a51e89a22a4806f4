package testenv

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a server a test started with StartProcess. It is stopped when
// the test ends.
type Process struct {
	// Cmd is the started command; Cmd.Process.Pid is the server's PID.
	Cmd *exec.Cmd
	// LogPath is the file holding the server's stdout and stderr.
	LogPath string

	done chan struct{}
}

// StartProcess starts cmd with stdout and stderr in logPath, killed with the
// test binary if that dies (no orphans), and stops it when the test ends:
// SIGCONT (in case a test froze it), then stop, then SIGKILL if it has not
// exited after grace. Use SIGKILL as stop for servers that keep all their
// state in the test's temporary directory.
func StartProcess(t testing.TB, cmd *exec.Cmd, logPath string, stop syscall.Signal, grace time.Duration) *Process {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p := &Process{Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(stop)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Log returns what the process has written so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// WaitListening waits until addr accepts TCP connections. It fails the test,
// with the process's log, if the process exits first or timeout passes.
func (p *Process) WaitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	if err := waitListening(addr, timeout, p.done); err != nil {
		t.Fatalf("%s: %v; its log (%s):\n%s", p.Cmd.Path, err, p.LogPath, p.Log())
	}
}

// SparseFile creates (or truncates) a sparse file of size bytes at path, a
// disk image for a storage server the test runs, and returns path.
func SparseFile(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}
