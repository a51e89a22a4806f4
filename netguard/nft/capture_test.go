package nft_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sniffer records the frames an interface inside a test netns receives, as
// tcpdump would, through a raw packet socket opened in that namespace.
type sniffer struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	done   chan struct{}
}

func sniff(t *testing.T, ns, iface string) *sniffer {
	t.Helper()
	var (
		fd  = -1
		err error
	)
	func() {
		runtime.LockOSThread()
		orig, oerr := os.Open("/proc/thread-self/ns/net")
		if oerr != nil {
			err = oerr
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		target, terr := os.Open("/run/netns/" + ns)
		if terr != nil {
			err = terr
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			return
		}
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName(iface); err == nil {
			fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
			if err == nil {
				err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
			}
		}
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			err = errors.Join(err, serr) // keep the thread locked: it dies with us
			return
		}
		runtime.UnlockOSThread()
	}()
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		t.Fatalf("sniff %s in netns %s: %v", iface, ns, err)
	}
	tv := unix.NsecToTimeval(50e6)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	s := &sniffer{fd: fd, done: make(chan struct{})}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 2048)
		for {
			select {
			case <-s.done:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout: look at done again
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			s.mu.Lock()
			s.frames = append(s.frames, bytes.Clone(buf[:n]))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.stop()
		<-stopped
		unix.Close(fd)
	})
	return s
}

func (s *sniffer) stop() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// received returns the frames received so far that match.
func (s *sniffer) received(match func(f []byte) bool) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, f := range s.frames {
		if match(f) {
			out = append(out, f)
		}
	}
	return out
}

// await is received for frames the test expects: the sniffer reads on its
// own goroutine, so a frame that already crossed the wire may not be recorded
// yet. It waits for a match up to a bound, then returns what it has.
func (s *sniffer) await(match func(f []byte) bool) [][]byte {
	deadline := time.Now().Add(3 * time.Second)
	for {
		if f := s.received(match); len(f) > 0 || time.Now().After(deadline) {
			return f
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fromMAC(mac net.HardwareAddr) func([]byte) bool {
	return func(f []byte) bool { return len(f) >= 14 && bytes.Equal(f[6:12], mac) }
}

func toMAC(mac net.HardwareAddr) func([]byte) bool {
	return func(f []byte) bool { return len(f) >= 14 && bytes.Equal(f[0:6], mac) }
}

func etherType(f []byte) uint16 { return binary.BigEndian.Uint16(f[12:14]) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }
