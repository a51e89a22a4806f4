package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/xenha/xenha/netguard"
)

// Ethernet types and addresses of the announcements.
const (
	ethARP  = 0x0806
	ethIPv6 = 0x86dd
)

var (
	broadcast    = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodesMAC  = net.HardwareAddr{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}
	allNodesIPv6 = netip.MustParseAddr("ff02::1")
)

// frame is one Ethernet frame to send, with the fields the raw socket's
// address needs.
type frame struct {
	dst   net.HardwareAddr
	proto uint16
	data  []byte
}

// Announce tells the segment where vif now is: for each IPv4 address a
// gratuitous ARP (an ARP request whose sender and target are the address,
// RFC 5227's announcement), for each IPv6 address an unsolicited neighbour
// advertisement with the override flag to ff02::1 (RFC 4861 7.2.6), all from
// the VM's MAC and sent on the bridge, so that switches and neighbours move
// the VM's address to this host at once. A VIF whose traffic the state in
// force blocks is refused with [netguard.ErrBlocked]: its frames would be
// dropped, and a blocked VM must stay silent.
func (g *Guard) Announce(ctx context.Context, vif netguard.VIF) error {
	if len(vif.MAC) != 6 {
		return fmt.Errorf("%w: announce for VM %q: MAC %q, want 6 bytes", netguard.ErrInvalidState, vif.VM, vif.MAC)
	}
	cur, err := g.Current(ctx)
	if err != nil {
		return err
	}
	if ok, _ := cur.Allowed(vif.MAC); !ok {
		return fmt.Errorf("%w: announce for VM %q (MAC %s) refused: table bridge %s blocks it; Apply a state that allows it first",
			netguard.ErrBlocked, vif.VM, vif.MAC, g.table)
	}
	frames := announcements(vif.MAC, vif.Addrs)
	if len(frames) == 0 {
		return nil
	}
	bridge, err := g.bridgeOf(vif)
	if err != nil {
		return err
	}
	if err := g.send(ctx, bridge, frames); err != nil {
		return fmt.Errorf("nft: announce VM %q (MAC %s) on bridge %s: %w", vif.VM, vif.MAC, bridge, err)
	}
	g.log.InfoContext(ctx, "netguard announced", "vm", vif.VM, "mac", vif.MAC.String(), "bridge", bridge, "frames", len(frames))
	return nil
}

// bridgeOf is the bridge to announce vif on: the guard's, or the master of
// the VIF's port.
func (g *Guard) bridgeOf(vif netguard.VIF) (string, error) {
	if g.bridge != "" {
		return g.bridge, nil
	}
	if vif.Port == "" || g.netns >= 0 {
		return "", fmt.Errorf("nft: announce VM %q: no bridge known; create the guard WithBridge", vif.VM)
	}
	master, err := os.Readlink(filepath.Join("/sys/class/net", filepath.Base(vif.Port), "master"))
	if err != nil {
		return "", fmt.Errorf("nft: announce VM %q: bridge of port %s: %w (is the port on a bridge? or create the guard WithBridge)", vif.VM, vif.Port, err)
	}
	return filepath.Base(master), nil
}

// send writes the frames on ifname through a raw packet socket opened in
// the guard's network namespace.
func (g *Guard) send(ctx context.Context, ifname string, frames []frame) error {
	fd, ifindex, err := g.packetSocket(ifname)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, f := range frames {
		if err := ctx.Err(); err != nil {
			return err
		}
		sa := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6, Protocol: htons(f.proto)}
		copy(sa.Addr[:], f.dst)
		if err := unix.Sendto(fd, f.data, 0, sa); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	return nil
}

// packetSocket opens an AF_PACKET socket in the guard's namespace: the
// socket stays bound to the namespace it was made in, so only its creation
// runs on a thread moved into the namespace.
func (g *Guard) packetSocket(ifname string) (fd, ifindex int, err error) {
	open := func() (int, int, error) {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return -1, 0, err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, 0, fmt.Errorf("raw packet socket (needs CAP_NET_RAW): %w", err)
		}
		return fd, ifi.Index, nil
	}
	if g.netns < 0 {
		return open()
	}
	err = inNetNS(g.netns, func() error {
		fd, ifindex, err = open()
		return err
	})
	return fd, ifindex, err
}

// inNetNS runs fn on an OS thread moved into the network namespace nsfd,
// then moves the thread back. A thread that cannot be moved back is left
// locked, so the runtime retires it rather than reuse it in the wrong
// namespace.
func inNetNS(nsfd int, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("leave network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// announcements builds the frames announcing mac at addrs.
func announcements(mac net.HardwareAddr, addrs []netip.Addr) []frame {
	var out []frame
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case a.Is4():
			out = append(out, frame{dst: broadcast, proto: ethARP, data: garp(mac, a)})
		case a.Is6() && !a.IsMulticast():
			out = append(out, frame{dst: allNodesMAC, proto: ethIPv6, data: unsolicitedNA(mac, a.WithZone(""))})
		}
	}
	return out
}

func ethernet(dst, src net.HardwareAddr, proto uint16) []byte {
	b := make([]byte, 0, 86)
	b = append(b, dst...)
	b = append(b, src...)
	return binary.BigEndian.AppendUint16(b, proto)
}

// garp is an ARP request from mac whose sender and target address are ip.
func garp(mac net.HardwareAddr, ip netip.Addr) []byte {
	b := ethernet(broadcast, mac, ethARP)
	b = binary.BigEndian.AppendUint16(b, 1)      // hardware: Ethernet
	b = binary.BigEndian.AppendUint16(b, 0x0800) // protocol: IPv4
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, 1) // request
	ip4 := ip.As4()
	b = append(b, mac...)
	b = append(b, ip4[:]...)
	b = append(b, make([]byte, 6)...) // target MAC: unknown
	b = append(b, ip4[:]...)
	for len(b) < 60 { // minimum Ethernet payload, without FCS
		b = append(b, 0)
	}
	return b
}

// unsolicitedNA is an ICMPv6 neighbour advertisement from ip to all nodes,
// override flag set, carrying mac as target link-layer address.
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) []byte {
	icmp := []byte{136, 0, 0, 0, 0x20, 0, 0, 0} // type NA, code, checksum, flags: O
	t := ip.As16()
	icmp = append(icmp, t[:]...)
	icmp = append(icmp, 2, 1) // option: target link-layer address, 8 bytes
	icmp = append(icmp, mac...)
	dst := allNodesIPv6.As16()
	binary.BigEndian.PutUint16(icmp[2:], icmpv6Checksum(t, dst, icmp))

	b := ethernet(allNodesMAC, mac, ethIPv6)
	b = append(b, 0x60, 0, 0, 0) // version 6, class and flow 0
	b = binary.BigEndian.AppendUint16(b, uint16(len(icmp)))
	b = append(b, 58, 255) // next header ICMPv6, hop limit 255 (RFC 4861 requires it)
	b = append(b, t[:]...)
	b = append(b, dst[:]...)
	return append(b, icmp...)
}

func icmpv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	var pseudo [8]byte
	binary.BigEndian.PutUint32(pseudo[:4], uint32(len(msg)))
	pseudo[7] = 58
	add(pseudo[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
