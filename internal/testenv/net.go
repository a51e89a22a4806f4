package testenv

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago, for a
// server the test is about to start. Another process may take it first; a
// server that then fails to bind shows up in its start-up wait.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free loopback TCP port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeUDPPort is FreePort for UDP.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free loopback UDP port: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// ClosedPort returns a loopback TCP port that refuses connections for the
// rest of the test. A socket bound to it but never listening holds it, so no
// other test's server can take it and a dial there disturbs no one.
func ClosedPort(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// SilentServer listens on a loopback TCP port, accepts every connection and
// never answers: a hung server, for timeout tests. It returns "host:port" and
// closes everything when the test ends.
func SilentServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// Listening reports whether something accepts TCP connections at addr
// ("host:port") right now.
func Listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// WaitListening waits until addr accepts TCP connections, failing the test
// after timeout. Use Process.WaitListening for a server the test started, so
// that a server that dies at start-up fails at once, with its log.
func WaitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	if err := waitListening(addr, timeout, nil); err != nil {
		t.Fatal(err)
	}
}

// waitListening polls addr until it listens, timeout passes, or exited (if
// not nil) is closed.
func waitListening(addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for !Listening(addr) {
		select {
		case <-exited:
			return &notListening{addr: addr, exited: true}
		default:
		}
		if time.Now().After(deadline) {
			return &notListening{addr: addr, timeout: timeout}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return nil
}

type notListening struct {
	addr    string
	exited  bool
	timeout time.Duration
}

func (e *notListening) Error() string {
	if e.exited {
		return "the server exited before listening on " + e.addr
	}
	return "nothing listened on " + e.addr + " within " + e.timeout.String()
}

// Context returns a context that ends after d or when the test ends,
// whichever is first, so that a hung call fails the test instead of hanging
// it.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
