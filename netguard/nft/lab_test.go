package nft_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/netguard"
)

// A lab is one Xen-like host built from network namespaces:
//
//	vm1 (eth0) ── vif1.0 ┐
//	vm2 (eth0) ── vif2.0 ├─ br0 198.18.0.1 (dom0)  [host netns]
//	out (eth0) ── port0 ─┘
//
// Every VM's eth0 has a fixed MAC, 198.18.0.1x/24 and 2001:2::1x/64; "out" is
// the rest of the network (198.18.0.2). Names carry the pid and a counter,
// so parallel tests and packages never collide.
type lab struct {
	t    testing.TB
	host string // netns names
	out  string
	nsFd *os.File // the host netns, for the guard
	vms  []*labVM
}

type labVM struct {
	ns   string
	port string // host-side veth, the "vif"
	vif  netguard.VIF
	ip4  netip.Addr
}

var labSeq atomic.Int64

const outIP = "198.18.0.2"

var outMAC = net.HardwareAddr{0x02, 0x58, 0x48, 0x00, 0x00, 0x02}

func vmMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0x58, 0x48, 0x00, 0x01, byte(i)} }

// newLab builds a host with n VMs, or skips (fails in CI) without root.
func newLab(t testing.TB, n int) *lab {
	t.Helper()
	testenv.NeedRoot(t)
	for _, b := range []string{"ip", "ping", "arping"} {
		testenv.NeedBinary(t, b)
	}
	id := fmt.Sprintf("xng%d-%d", os.Getpid(), labSeq.Add(1))
	l := &lab{t: t, host: id + "-host", out: id + "-out"}
	l.addNS(l.host)
	l.addNS(l.out)
	l.ip(l.host, "link", "add", "br0", "type", "bridge")
	l.ip(l.host, "addr", "add", "198.18.0.1/24", "dev", "br0")
	l.ip(l.host, "link", "set", "br0", "up")
	l.ip(l.host, "link", "set", "lo", "up")
	l.ip(l.host, "link", "add", "port0", "type", "veth", "peer", "name", "eth0", "netns", l.out)
	l.ip(l.host, "link", "set", "port0", "master", "br0", "up")
	l.ip(l.out, "link", "set", "eth0", "address", outMAC.String())
	l.ip(l.out, "addr", "add", outIP+"/24", "dev", "eth0")
	l.ip(l.out, "addr", "add", "2001:2::2/64", "dev", "eth0", "nodad")
	l.ip(l.out, "link", "set", "eth0", "up")
	for i := 1; i <= n; i++ {
		vm := &labVM{ns: fmt.Sprintf("%s-vm%d", id, i), ip4: netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 10+i))}
		vm.vif = netguard.VIF{VM: fmt.Sprintf("vm%d", i), MAC: vmMAC(i),
			Addrs: []netip.Addr{vm.ip4, netip.MustParseAddr(fmt.Sprintf("2001:2::%d", 10+i))}}
		l.addNS(vm.ns)
		l.vms = append(l.vms, vm)
		l.plugVIF(vm, fmt.Sprintf("vif%d.0", i))
		l.ip(vm.ns, "addr", "add", vm.ip4.String()+"/24", "dev", "eth0")
		l.ip(vm.ns, "addr", "add", vm.vif.Addrs[1].String()+"/64", "dev", "eth0", "nodad")
		l.ip(vm.ns, "link", "set", "eth0", "up")
	}
	f, err := os.Open("/run/netns/" + l.host)
	if err != nil {
		t.Fatalf("open host netns: %v", err)
	}
	l.nsFd = f
	t.Cleanup(func() { f.Close() })
	return l
}

// plugVIF creates the VM's interface: a veth whose host end (named port) is
// on br0 and whose VM end is eth0 with the VM's MAC. Called again after
// unplugVIF it plays a VM re-created by the hypervisor under a new vif name.
func (l *lab) plugVIF(vm *labVM, port string) {
	vm.port, vm.vif.Port = port, port
	l.ip(l.host, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", vm.ns)
	l.ip(vm.ns, "link", "set", "eth0", "address", vm.vif.MAC.String())
	l.ip(l.host, "link", "set", port, "master", "br0", "up")
}

func (l *lab) unplugVIF(vm *labVM) { l.ip(l.host, "link", "del", vm.port) }

func (l *lab) addNS(name string) {
	l.run("ip", "netns", "add", name)
	l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
}

func (l *lab) ip(ns string, args ...string) {
	l.t.Helper()
	l.run("ip", append([]string{"-n", ns}, args...)...)
}

func (l *lab) run(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// in runs a command in netns ns and reports whether it exited 0.
func in(ctx context.Context, ns string, args ...string) bool {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).Run() == nil
}

// pings reports whether a ping from netns ns to dst gets an answer within a
// second; it sends every 0.2 s, so one packet lost to a loaded machine does
// not read as blocked.
func pings(ctx context.Context, ns, dst string) bool {
	return in(ctx, ns, "ping", "-c1", "-w1", "-i0.2", "-n", "-q", dst)
}

// arpings reports whether an ARP request from ns for dst gets an answer.
func arpings(ctx context.Context, ns, dst string) bool {
	return in(ctx, ns, "arping", "-c1", "-w1", "-f", "-q", "-I", "eth0", dst)
}

// probe is the conformance suite's evidence: traffic of a VIF passes if the
// outside reaches the VM and back.
func (l *lab) probe(ctx context.Context, v netguard.VIF) (bool, error) {
	for _, vm := range l.vms {
		if vm.vif.MAC.String() == v.MAC.String() {
			// A neighbour entry left INCOMPLETE by an earlier, blocked probe
			// would hold this ping until its next retransmission.
			_ = exec.CommandContext(ctx, "ip", "-n", l.out, "neigh", "flush", "to", vm.ip4.String()).Run()
			return pings(ctx, l.out, vm.ip4.String()), nil
		}
	}
	return false, fmt.Errorf("lab has no VM with MAC %s", v.MAC)
}

func (l *lab) vifs() []netguard.VIF {
	var out []netguard.VIF
	for _, vm := range l.vms {
		out = append(out, vm.vif)
	}
	return out
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
