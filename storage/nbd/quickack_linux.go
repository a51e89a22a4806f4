package nbd

import (
	"net"
	"syscall"
)

// quickAck asks the kernel to acknowledge received data at once. NBD servers
// send a reply's header and payload in separate small writes; with Nagle on
// their side and delayed ACKs on ours, each probe otherwise stalls ~40 ms.
// Linux resets the flag after it acks, so it is set again before each read.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
}
