package nft

import (
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/xenha/xenha/netguard"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// recorder stands in for the kernel: it keeps every netlink message a guard
// sends and acknowledges each, so Apply runs to completion without root.
type recorder struct{ msgs []netlink.Message }

func (r *recorder) dial(req []netlink.Message) ([]netlink.Message, error) {
	r.msgs = append(r.msgs, req...)
	var acks []netlink.Message
	for _, m := range req {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			acks = append(acks, netlink.Message{
				Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID},
				Data:   make([]byte, 4),
			})
		}
	}
	return acks, nil
}

var msgNames = map[uint16]string{
	unix.NFNL_MSG_BATCH_BEGIN: "BATCH_BEGIN",
	unix.NFNL_MSG_BATCH_END:   "BATCH_END",
	unix.NFT_MSG_NEWTABLE:     "NEWTABLE",
	unix.NFT_MSG_DELTABLE:     "DELTABLE",
	unix.NFT_MSG_NEWCHAIN:     "NEWCHAIN",
	unix.NFT_MSG_NEWRULE:      "NEWRULE",
	unix.NFT_MSG_NEWSET:       "NEWSET",
	unix.NFT_MSG_NEWSETELEM:   "NEWSETELEM",
}

// render writes the messages as the golden text: type and flags, then the
// payload in hex. Sequence numbers and port IDs vary per run and are left out.
func render(msgs []netlink.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		typ := uint16(m.Header.Type)
		name, ok := msgNames[typ&0xff]
		if typ < 0x100 {
			name, ok = msgNames[typ]
		}
		if !ok {
			name = fmt.Sprintf("type %#x", typ)
		}
		fmt.Fprintf(&b, "%s flags=%#x\n", name, uint16(m.Header.Flags))
		for chunk := range slicesChunk(m.Data, 16) {
			fmt.Fprintf(&b, "  %s\n", hex.EncodeToString(chunk))
		}
	}
	return b.String()
}

func slicesChunk(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run 'go test ./netguard/nft -run %s -update' to create it)", err, t.Name())
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s\n(if the change is intended, rerun with -update)", path, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%s: got %d lines, want %d (if intended, rerun with -update)", path, len(gl), len(wl))
	}
}

func goldenState(mode netguard.Mode) netguard.State {
	return netguard.State{Mode: mode, Rules: []netguard.Rule{
		{VIF: netguard.VIF{VM: "gw-b", MAC: net.HardwareAddr{0x02, 0x58, 0x48, 0, 0, 0x0b}, Port: "vif4.0"}, Allow: true},
		{VIF: netguard.VIF{VM: "gw-a", MAC: net.HardwareAddr{0x02, 0x58, 0x48, 0, 0, 0x0a}, Port: "vif3.0",
			Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.10")}}},
	}}
}

// TestApplyBatchGolden pins the exact netlink batch of Apply per mode: one
// batch, table added, deleted and rebuilt, sets with their elements, three
// base chains and the drop rules.
func TestApplyBatchGolden(t *testing.T) {
	for _, c := range []struct {
		name  string
		state netguard.State
	}{
		{"apply-per-vif", goldenState(netguard.PerVIF)},
		{"apply-block-all", goldenState(netguard.BlockAll)},
		{"apply-allow-all", goldenState(netguard.AllowAll)},
		{"apply-empty", netguard.State{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			g, err := New(WithTable("xenha"))
			if err != nil {
				t.Fatal(err)
			}
			g.dial = rec.dial
			if err := g.Apply(t.Context(), c.state); err != nil {
				t.Fatal(err)
			}
			if n := countType(rec.msgs, unix.NFNL_MSG_BATCH_BEGIN); n != 1 {
				t.Fatalf("Apply sent %d batches, want exactly 1 (atomic)", n)
			}
			golden(t, c.name, render(rec.msgs))
		})
	}
}

func countType(msgs []netlink.Message, typ uint16) int {
	n := 0
	for _, m := range msgs {
		if uint16(m.Header.Type) == typ {
			n++
		}
	}
	return n
}

// TestApplyChunksLargeSets: with many VIFs the elements are spread over
// several messages, each within netlink's 64 KiB attribute limit, still in
// one batch.
func TestApplyChunksLargeSets(t *testing.T) {
	var s netguard.State
	long := strings.Repeat("v", 200)
	for i := range 1000 {
		s.Rules = append(s.Rules, netguard.Rule{VIF: netguard.VIF{VM: long, MAC: net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)}}})
	}
	rec := &recorder{}
	g, _ := New()
	g.dial = rec.dial
	if err := g.Apply(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if n := countType(rec.msgs, unix.NFNL_MSG_BATCH_BEGIN); n != 1 {
		t.Fatalf("%d batches, want 1", n)
	}
	elemMsgs := 0
	for _, m := range rec.msgs {
		if uint16(m.Header.Type)&0xff == unix.NFT_MSG_NEWSETELEM && uint16(m.Header.Type) > 0xff {
			elemMsgs++
			if len(m.Data) > 0xffff {
				t.Errorf("set-element message of %d bytes overflows a netlink attribute", len(m.Data))
			}
		}
	}
	if elemMsgs < 1000/elemsPerMessage {
		t.Errorf("%d set-element messages for 1,000 VIFs, want at least %d", elemMsgs, 1000/elemsPerMessage)
	}
}

// TestAnnouncementFramesGolden pins the bytes of a gratuitous ARP and an
// unsolicited NA; TestAnnounce (system) shows a kernel accepts them.
func TestAnnouncementFramesGolden(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x58, 0x48, 0, 0, 0x0a}
	frames := announcements(mac, []netip.Addr{
		netip.MustParseAddr("198.18.0.10"),
		netip.MustParseAddr("2001:2::a"),
		netip.MustParseAddr("::ffff:198.18.0.11"), // mapped: announced as IPv4
		netip.MustParseAddr("ff02::2"),            // multicast: never announced
	})
	if len(frames) != 3 {
		t.Fatalf("%d frames, want 3 (ARP, NA, ARP)", len(frames))
	}
	var b strings.Builder
	for _, f := range frames {
		fmt.Fprintf(&b, "dst=%s proto=%#04x len=%d\n", f.dst, f.proto, len(f.data))
		for chunk := range slicesChunk(f.data, 16) {
			fmt.Fprintf(&b, "  %s\n", hex.EncodeToString(chunk))
		}
	}
	golden(t, "announce-frames", b.String())

	// The NA's checksum verifies: summing the pseudo-header and message,
	// checksum included, gives zero.
	na := frames[1].data
	var src, dst [16]byte
	copy(src[:], na[22:38])
	copy(dst[:], na[38:54])
	if c := icmpv6Checksum(src, dst, na[54:]); c != 0 {
		t.Errorf("NA checksum does not verify: residue %#04x", c)
	}
}
