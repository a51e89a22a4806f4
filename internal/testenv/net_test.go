package testenv

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClosedPortRefuses(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(ClosedPort(t))
	if Listening(addr) {
		t.Fatalf("ClosedPort %s accepted a connection", addr)
	}
	if _, err := net.Listen("tcp", addr); err == nil {
		t.Fatalf("another listener could take ClosedPort %s", addr)
	}
}

func TestFreePortCanBeListenedOn(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	if Listening(addr) {
		t.Fatalf("FreePort %s already listens", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreePort: %v", err)
	}
	defer l.Close()
	WaitListening(t, addr, 5*time.Second)
	c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(FreeUDPPort(t)))
	if err != nil {
		t.Fatalf("bind FreeUDPPort: %v", err)
	}
	c.Close()
}

func TestSilentServerAcceptsAndSaysNothing(t *testing.T) {
	c, err := net.DialTimeout("tcp", SilentServer(t), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [1]byte
	n, err := c.Read(b[:])
	if ne, ok := err.(net.Error); n != 0 || !ok || !ne.Timeout() {
		t.Fatalf("read from the silent server = %d, %v; want a timeout", n, err)
	}
}

func TestSparseFile(t *testing.T) {
	p := SparseFile(t, filepath.Join(t.TempDir(), "disk.img"), 1<<30)
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 1<<30 || st.Blocks*512 >= 1<<20 {
		t.Fatalf("size %d, %d bytes allocated; want 1 GiB, sparse", st.Size, st.Blocks*512)
	}
}

func TestProcessWaitAndStop(t *testing.T) {
	sh := NeedBinary(t, "sh")
	p := StartProcess(t, exec.Command(sh, "-c", "echo started; exec sleep 60"),
		filepath.Join(t.TempDir(), "sh.log"), syscall.SIGTERM, 5*time.Second)
	if p.Exited() {
		t.Fatal("process exited at once")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Log(), "started") {
		if time.Now().After(deadline) {
			t.Fatalf("log %q never showed the output", p.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	q := StartProcess(t, exec.Command(sh, "-c", "echo bye; exit 3"), filepath.Join(t.TempDir(), "q.log"), syscall.SIGTERM, time.Second)
	<-q.Done()
	if err := waitListening("127.0.0.1:"+strconv.Itoa(ClosedPort(t)), 10*time.Second, q.Done()); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("waiting on an exited process: %v; want an error saying it exited", err)
	}
}
