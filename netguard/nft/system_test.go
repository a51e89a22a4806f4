package nft_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/netguard"
	"github.com/xenha/xenha/netguard/netguardtest"
	"github.com/xenha/xenha/netguard/nft"
)

// reach is one connectivity check: does traffic from a netns get through?
type reach struct {
	name string
	ok   func(ctx context.Context) bool
	want bool
}

// expect runs the checks concurrently (a blocked one waits for a timeout)
// and reports every mismatch.
func expect(t *testing.T, checks ...reach) {
	t.Helper()
	ctx := testCtx(t)
	got := make([]bool, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			got[i] = c.ok(ctx)
			// Traffic that should pass gets two more tries: on a loaded
			// machine a probe can time out. Traffic that passes is proof,
			// so blocked checks need no retry.
			for try := 0; c.want && !got[i] && try < 2; try++ {
				got[i] = c.ok(ctx)
			}
		})
	}
	wg.Wait()
	for i, c := range checks {
		if got[i] != c.want {
			t.Errorf("%s: got through = %v, want %v", c.name, got[i], c.want)
		}
	}
}

func (l *lab) flushNeigh() {
	for _, ns := range append([]string{l.host, l.out}, l.vmNS()...) {
		_ = exec.Command("ip", "-n", ns, "neigh", "flush", "all").Run()
	}
}

func (l *lab) vmNS() []string {
	var out []string
	for _, vm := range l.vms {
		out = append(out, vm.ns)
	}
	return out
}

// vmChecks are the checks of one VM's traffic, each expected to pass iff
// allowed: IP and ARP, both directions, with the outside and with dom0.
func (l *lab) vmChecks(vm *labVM, allowed bool) []reach {
	ip := vm.ip4.String()
	return []reach{
		{vm.vif.VM + " ping from outside", func(ctx context.Context) bool { return pings(ctx, l.out, ip) }, allowed},
		{vm.vif.VM + " arping from outside", func(ctx context.Context) bool { return arpings(ctx, l.out, ip) }, allowed},
		{vm.vif.VM + " ping to outside", func(ctx context.Context) bool { return pings(ctx, vm.ns, outIP) }, allowed},
		{vm.vif.VM + " arping to outside", func(ctx context.Context) bool { return arpings(ctx, vm.ns, outIP) }, allowed},
		{vm.vif.VM + " ping6 to outside", func(ctx context.Context) bool { return pings(ctx, vm.ns, "2001:2::2") }, allowed},
		{vm.vif.VM + " arping to dom0", func(ctx context.Context) bool { return arpings(ctx, vm.ns, "198.18.0.1") }, allowed},
		{vm.vif.VM + " ping from dom0", func(ctx context.Context) bool { return pings(ctx, l.host, ip) }, allowed},
	}
}

// dom0Checks: the host's own traffic is never touched.
func (l *lab) dom0Checks() []reach {
	return []reach{
		{"dom0 ping to outside", func(ctx context.Context) bool { return pings(ctx, l.host, outIP) }, true},
		{"outside arping dom0", func(ctx context.Context) bool { return arpings(ctx, l.out, "198.18.0.1") }, true},
	}
}

func rules(vms []*labVM, allow ...bool) netguard.State {
	var s netguard.State
	for i, vm := range vms {
		s.Rules = append(s.Rules, netguard.Rule{VIF: vm.vif, Allow: allow[i]})
	}
	return s
}

// TestBlockUnblockRealTraffic is issue 7's core: one VM blocked, one allowed,
// proven with ping, ping6 and arping both ways; then the blocked one is let
// through and the allowed one blocked, in one Apply.
func TestBlockUnblockRealTraffic(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	g := l.guard()
	vm1, vm2 := l.vms[0], l.vms[1]
	if err := g.Apply(testCtx(t), rules(l.vms, false, true)); err != nil {
		t.Fatal(err)
	}
	vmToVM := reach{"vm1 ping vm2", func(ctx context.Context) bool { return pings(ctx, vm1.ns, vm2.ip4.String()) }, false}
	expect(t, append(append(l.vmChecks(vm1, false), l.vmChecks(vm2, true)...), append(l.dom0Checks(), vmToVM)...)...)

	l.flushNeigh()
	if err := g.Apply(testCtx(t), rules(l.vms, true, false)); err != nil {
		t.Fatal(err)
	}
	expect(t, append(append(l.vmChecks(vm1, true), l.vmChecks(vm2, false)...), l.dom0Checks()...)...)
}

// TestBlockedVMSendsAndReceivesNothing watches the wire rather than the
// replies: while vm1 is blocked no frame from its MAC reaches the outside,
// and no frame addressed to it reaches it, even when the outside knows its
// MAC (a static neighbour entry, as after a failover).
func TestBlockedVMSendsAndReceivesNothing(t *testing.T) {
	t.Parallel()
	l := newLab(t, 1)
	vm := l.vms[0]
	if err := l.guard().Apply(testCtx(t), rules(l.vms, false)); err != nil {
		t.Fatal(err)
	}
	l.ip(l.out, "neigh", "replace", vm.ip4.String(), "lladdr", vm.vif.MAC.String(), "dev", "eth0", "nud", "permanent")
	atOut := sniff(t, l.out, "eth0")
	atVM := sniff(t, vm.ns, "eth0")
	expect(t,
		reach{"vm arping to outside", func(ctx context.Context) bool { return arpings(ctx, vm.ns, outIP) }, false},
		reach{"vm ping to outside", func(ctx context.Context) bool { return pings(ctx, vm.ns, outIP) }, false},
		reach{"unicast ping from outside", func(ctx context.Context) bool { return pings(ctx, l.out, vm.ip4.String()) }, false},
	)
	if f := atOut.received(fromMAC(vm.vif.MAC)); len(f) > 0 {
		t.Errorf("outside received %d frames from blocked VM %s, first ethertype %#04x", len(f), vm.vif.MAC, etherType(f[0]))
	}
	if f := atVM.received(toMAC(vm.vif.MAC)); len(f) > 0 {
		t.Errorf("blocked VM received %d frames addressed to it, first ethertype %#04x", len(f), etherType(f[0]))
	}
	// Not even the outside's broadcasts (its ARP requests for the VM's
	// address): they are stopped at the VM's port.
	if f := atVM.received(fromMAC(outMAC)); len(f) > 0 {
		t.Errorf("blocked VM received %d frames from the outside, first to %x ethertype %#04x", len(f), f[0][:6], etherType(f[0]))
	}
	expect(t, reach{"arping from outside", func(ctx context.Context) bool { return arpings(ctx, l.out, vm.ip4.String()) }, false})
	if f := atVM.received(fromMAC(outMAC)); len(f) > 0 {
		t.Errorf("blocked VM received %d frames (broadcast ARP?) from the outside, first to %x ethertype %#04x", len(f), f[0][:6], etherType(f[0]))
	}
	// The sniffers work: the outside's own frames to the VM were sent, and
	// after unblocking they arrive.
	if err := l.guard().Apply(testCtx(t), rules(l.vms, true)); err != nil {
		t.Fatal(err)
	}
	l.ip(vm.ns, "neigh", "flush", "all") // entries left INCOMPLETE while blocked
	expect(t, reach{"unicast ping from outside", func(ctx context.Context) bool { return pings(ctx, l.out, vm.ip4.String()) }, true})
	if f := atVM.await(toMAC(vm.vif.MAC)); len(f) == 0 {
		t.Error("VM received nothing addressed to it after unblocking: the sniffer is blind, the test proves nothing")
	}
	expect(t, reach{"arping from outside", func(ctx context.Context) bool { return arpings(ctx, l.out, vm.ip4.String()) }, true})
	if f := atVM.await(func(f []byte) bool { return fromMAC(outMAC)(f) && etherType(f) == 0x0806 }); len(f) == 0 {
		t.Error("VM received no ARP from the outside after unblocking: the sniffer is blind to broadcasts")
	}
}

// TestRecreatedVIFStaysBlocked: the hypervisor destroys and re-creates a
// blocked VM; its new interface has a new name (vif7.0) and the same MAC. It
// is blocked without any Apply, because matching is by MAC.
func TestRecreatedVIFStaysBlocked(t *testing.T) {
	t.Parallel()
	l := newLab(t, 1)
	vm := l.vms[0]
	g := l.guard()
	if err := g.Apply(testCtx(t), rules(l.vms, false)); err != nil {
		t.Fatal(err)
	}
	l.unplugVIF(vm)
	l.plugVIF(vm, "vif7.0")
	l.ip(vm.ns, "addr", "add", vm.ip4.String()+"/24", "dev", "eth0")
	l.ip(vm.ns, "addr", "add", vm.vif.Addrs[1].String()+"/64", "dev", "eth0", "nodad")
	l.ip(vm.ns, "link", "set", "eth0", "up")
	expect(t, append(l.vmChecks(vm, false), l.dom0Checks()...)...)

	l.flushNeigh()
	if err := g.Apply(testCtx(t), rules(l.vms, true)); err != nil {
		t.Fatal(err)
	}
	expect(t, l.vmChecks(vm, true)...)
}

// TestAnnounce: after unblocking, the outside sees the gratuitous ARP and
// the unsolicited NA, and its neighbour table (seeded with a stale, wrong
// MAC, as after a failover) now points at the VM.
func TestAnnounce(t *testing.T) {
	t.Parallel()
	l := newLab(t, 1)
	vm := l.vms[0]
	g := l.guard()
	ctx := testCtx(t)
	if err := g.Apply(ctx, rules(l.vms, false)); err != nil {
		t.Fatal(err)
	}
	if err := g.Announce(ctx, vm.vif); !errors.Is(err, netguard.ErrBlocked) {
		t.Fatalf("Announce of a blocked VIF = %v, want ErrBlocked", err)
	}
	const oldMAC = "02:99:00:00:00:99"
	ip6 := vm.vif.Addrs[1].String()
	l.ip(l.out, "neigh", "replace", vm.ip4.String(), "lladdr", oldMAC, "dev", "eth0", "nud", "stale")
	l.ip(l.out, "neigh", "replace", ip6, "lladdr", oldMAC, "dev", "eth0", "nud", "stale")
	atOut := sniff(t, l.out, "eth0")

	if err := g.Apply(ctx, rules(l.vms, true)); err != nil {
		t.Fatal(err)
	}
	noPort := vm.vif
	noPort.Port = ""
	if err := g.Announce(ctx, noPort); err == nil || errors.Is(err, netguard.ErrBlocked) {
		t.Errorf("Announce without a port or a bridge = %v, want an error naming the missing bridge", err)
	}
	if err := l.guard(nft.WithBridge("br0")).Announce(ctx, noPort); err != nil {
		t.Fatalf("Announce WithBridge: %v", err)
	}
	if err := g.Announce(ctx, vm.vif); err != nil { // bridge found from the port
		t.Fatalf("Announce: %v", err)
	}
	ip4 := vm.ip4.As4()
	wantARP := func(f []byte) bool {
		return fromMAC(vm.vif.MAC)(f) && etherType(f) == 0x0806 && len(f) >= 42 &&
			bytes.Equal(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) &&
			bytes.Equal(f[22:28], vm.vif.MAC) && bytes.Equal(f[28:32], ip4[:]) && bytes.Equal(f[38:42], ip4[:])
	}
	t6 := vm.vif.Addrs[1].As16()
	wantNA := func(f []byte) bool {
		return fromMAC(vm.vif.MAC)(f) && etherType(f) == 0x86dd && len(f) >= 86 &&
			f[54] == 136 && bytes.Equal(f[62:78], t6[:]) && bytes.Equal(f[80:86], vm.vif.MAC)
	}
	var arps, nas [][]byte
	neigh4, neigh6 := "", ""
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		arps, nas = atOut.received(wantARP), atOut.received(wantNA)
		neigh4, neigh6 = neighbour(l.out, vm.ip4.String()), neighbour(l.out, ip6)
		// Two announcements: one on the named bridge, one on the port's.
		if len(arps) >= 2 && len(nas) >= 2 && strings.Contains(neigh4, vm.vif.MAC.String()) && strings.Contains(neigh6, vm.vif.MAC.String()) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("outside saw %d gratuitous ARPs and %d NAs for %s, want 2 each; neighbour entries: %q, %q (want MAC %s)",
		len(arps), len(nas), vm.vif.VM, neigh4, neigh6, vm.vif.MAC)
}

func neighbour(ns, ip string) string {
	out, _ := exec.Command("ip", "-n", ns, "neigh", "show", ip).CombinedOutput()
	return string(out)
}

// TestForeignEditIsReportedAndRepaired: a rule added by hand makes Current
// refuse to guess (ErrUnavailable), and the next Apply rebuilds the table.
func TestForeignEditIsReportedAndRepaired(t *testing.T) {
	t.Parallel()
	testenv.NeedBinary(t, "nft")
	l := newLab(t, 1)
	g := l.guard()
	want := rules(l.vms, false)
	if err := g.Apply(testCtx(t), want); err != nil {
		t.Fatal(err)
	}
	l.run("ip", "netns", "exec", l.host, "nft", "insert", "rule", "bridge", "xenha", "forward", "accept")
	if _, err := g.Current(testCtx(t)); !errors.Is(err, netguard.ErrUnavailable) {
		t.Fatalf("Current of a hand-edited table = %v, want ErrUnavailable", err)
	}
	if err := g.Apply(testCtx(t), want); err != nil {
		t.Fatal(err)
	}
	got, err := g.Current(testCtx(t))
	if err != nil || !netguardtest.Equal(got, want) {
		t.Fatalf("after repair Current = %+v, %v; want %+v", got, err, want)
	}
}

// TestScale: 1,000 VIFs (with names, ports and two addresses each) go in and
// come back whole; the batch outgrows netlink's default send buffer.
func TestScale(t *testing.T) {
	t.Parallel()
	l := newLab(t, 0)
	g := l.guard()
	s := manyVIFs(1000, false)
	if err := g.Apply(testCtx(t), s); err != nil {
		t.Fatal(err)
	}
	for i := range s.Rules {
		s.Rules[i].Allow = i%3 == 0
	}
	if err := g.Apply(testCtx(t), s); err != nil {
		t.Fatal(err)
	}
	got, err := g.Current(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := netguardtest.Diff(got, s); d != "" {
		t.Fatalf("1,000-VIF state did not round-trip: %s", d)
	}
}

func manyVIFs(n int, allow bool) netguard.State {
	var s netguard.State
	for i := range n {
		s.Rules = append(s.Rules, netguard.Rule{Allow: allow, VIF: netguard.VIF{
			VM:   fmt.Sprintf("tenant-%04d", i),
			MAC:  net.HardwareAddr{0x02, 0x58, 0x48, 0x10, byte(i >> 8), byte(i)},
			Port: fmt.Sprintf("vif%d.0", i+1),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}),
				netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 14: byte(i >> 8), 15: byte(i)})},
		}})
	}
	return s
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, opts := range [][]nft.Option{
		{nft.WithTable("")},
		{nft.WithTable(strings.Repeat("x", 256))},
		{nft.WithBridge("a-bridge-name-too-long")},
	} {
		if _, err := nft.New(opts...); err == nil {
			t.Errorf("New with %d bad options succeeded", len(opts))
		}
	}
}

// TestCurrentWithoutTable: a host where no guard ever ran guards nothing.
func TestCurrentWithoutTable(t *testing.T) {
	t.Parallel()
	l := newLab(t, 0)
	got, err := l.guard(nft.WithTable("never-applied")).Current(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !netguardtest.Equal(got, netguard.State{}) {
		t.Errorf("Current without a table = %+v, want the empty state", got)
	}
}

// TestConcurrentGuardsStayAtomic: two guards (as two processes would, each
// with its own netlink sockets) keep replacing each other's state while a
// third reads. Every read is one of the two states, whole: never a mix, never
// an error.
func TestConcurrentGuardsStayAtomic(t *testing.T) {
	t.Parallel()
	l := newLab(t, 0)
	a := manyVIFs(200, false)
	b := manyVIFs(200, true)
	b.Mode = netguard.AllowAll
	for i := range b.Rules {
		b.Rules[i].VIF.VM += "-b"
	}
	ctx := testCtx(t)
	if err := l.guard().Apply(ctx, a); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range []netguard.State{a, b} {
		g := l.guard()
		wg.Go(func() {
			for range 15 {
				if err := g.Apply(ctx, s); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(2 * time.Millisecond) // a failover storm, not a tight loop
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	reader := l.guard()
	reads := 0
	defer func() { <-done }() // writers report through t: let them finish first
	for {
		select {
		case <-done:
			if reads == 0 {
				t.Error("the reader never read while the writers ran")
			}
			return
		default:
		}
		got, err := reader.Current(ctx)
		if err != nil {
			t.Errorf("Current while writers run: %v", err)
			return
		}
		if !netguardtest.Equal(got, a) && !netguardtest.Equal(got, b) {
			t.Errorf("read a state that is neither written state: vs a: %s; vs b: %s", netguardtest.Diff(got, a), netguardtest.Diff(got, b))
			return
		}
		reads++
	}
}

// TestChangesRoundTrip: successive states of one mode go in as changes to the
// table in force (VIFs added and removed, allowed and blocked, renamed, all
// gone and back) and each reads back whole.
func TestChangesRoundTrip(t *testing.T) {
	t.Parallel()
	l := newLab(t, 0)
	g := l.guard()
	a := manyVIFs(12, false)
	b := manyVIFs(14, true)
	b.Rules = slices.Delete(b.Rules, 2, 5)
	b.Rules[0].VIF.VM = "renamed"
	b.Rules[1].Allow = false
	steps := []netguard.State{a, b, {Mode: a.Mode}, a, b}
	for i, s := range steps {
		if err := g.Apply(testCtx(t), s); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, err := g.Current(testCtx(t))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if d := netguardtest.Diff(got, s); d != "" {
			t.Fatalf("step %d did not round-trip: %s", i, d)
		}
	}
}
