package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"

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
	var bridge string
	if err := g.inNS(func() error {
		var err error
		bridge, err = g.bridgeOf(vif)
		if err != nil {
			return err
		}
		return send(ctx, bridge, frames)
	}); err != nil {
		return fmt.Errorf("nft: announce VM %q (MAC %s): %w", vif.VM, vif.MAC, err)
	}
	g.log.InfoContext(ctx, "netguard announced", "vm", vif.VM, "mac", vif.MAC.String(), "bridge", bridge, "frames", len(frames))
	return nil
}

// inNS runs fn in the guard's network namespace. A packet socket stays bound
// to the namespace it was made in, and the link dump reads the namespace of
// the calling thread: both must happen there.
func (g *Guard) inNS(fn func() error) error {
	if g.netns < 0 {
		return fn()
	}
	return inNetNS(g.netns, fn)
}

// bridgeOf is the bridge to announce vif on: the guard's, or the master of
// the VIF's port. It runs in the guard's namespace.
func (g *Guard) bridgeOf(vif netguard.VIF) (string, error) {
	if g.bridge != "" {
		return g.bridge, nil
	}
	if vif.Port == "" {
		return "", errors.New("no bridge known: the VIF names no port and the guard was created without WithBridge")
	}
	master, err := masterOf(vif.Port)
	if err != nil {
		return "", fmt.Errorf("bridge of port %s: %w (or create the guard WithBridge)", vif.Port, err)
	}
	return master, nil
}

// masterOf returns the name of the device port is enslaved to (its bridge),
// from a dump of the links of the calling thread's namespace.
func masterOf(port string) (string, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return "", fmt.Errorf("list links: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return "", fmt.Errorf("parse links: %w", err)
	}
	names := map[int32]string{}
	var master int32
	found := false
	for _, m := range msgs {
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		index := int32(binary.NativeEndian.Uint32(m.Data[4:8]))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			continue
		}
		var name string
		var up int32
		for _, a := range attrs {
			switch a.Attr.Type {
			case syscall.IFLA_IFNAME:
				name = strings.TrimRight(string(a.Value), "\x00")
			case syscall.IFLA_MASTER:
				if len(a.Value) == 4 {
					up = int32(binary.NativeEndian.Uint32(a.Value))
				}
			}
		}
		names[index] = name
		if name == port {
			master, found = up, true
		}
	}
	switch {
	case !found:
		return "", fmt.Errorf("no interface %q", port)
	case master == 0:
		return "", fmt.Errorf("interface %q is on no bridge", port)
	case names[master] == "":
		return "", fmt.Errorf("master %d of %q not found", master, port)
	}
	return names[master], nil
}

// send writes the frames on ifname through a raw packet socket. It runs in
// the guard's namespace.
func send(ctx context.Context, ifname string, frames []frame) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("raw packet socket (needs CAP_NET_RAW): %w", err)
	}
	defer unix.Close(fd)
	for _, f := range frames {
		if err := ctx.Err(); err != nil {
			return err
		}
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Protocol: htons(f.proto)}
		copy(sa.Addr[:], f.dst)
		if err := unix.Sendto(fd, f.data, 0, sa); err != nil {
			return fmt.Errorf("send on %s: %w", ifname, err)
		}
	}
	return nil
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
