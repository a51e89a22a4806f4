package nft

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"

	"github.com/xenha/xenha/netguard"
)

// FuzzDecodeMeta: element comments come from the kernel, where anyone with
// CAP_NET_ADMIN may have written them. Decoding never panics, and what it
// accepts re-encodes to something that decodes the same.
func FuzzDecodeMeta(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"v":"gw-a","p":"vif3.0","a":["198.18.0.10","2001:2::a"]}`,
		`{"v":1}`, `{"x":"unknown"}`, `{"a":["not-an-ip"]}`, `{"v":"a"} trailing`, `null`, `[]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, comment string) {
		m, err := decodeMeta(comment)
		if err != nil {
			return
		}
		vif := netguard.VIF{VM: m.VM, Port: m.Port, Addrs: m.Addrs, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
		enc, err := encodeMeta(vif)
		if err != nil {
			if !errors.Is(err, netguard.ErrInvalidState) {
				t.Fatalf("encodeMeta error not ErrInvalidState: %v", err)
			}
			return
		}
		back, err := decodeMeta(enc)
		if err != nil {
			t.Fatalf("decodeMeta(encodeMeta(%+v)) = %v", m, err)
		}
		if back.VM != m.VM || back.Port != m.Port || !slices.Equal(back.Addrs, m.Addrs) {
			t.Fatalf("round trip changed %+v to %+v", m, back)
		}
	})
}

// FuzzStateOf: read-back set contents of any shape give a valid State or an
// error, never a panic or a State that Validate rejects.
func FuzzStateOf(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}, []byte{2, 0, 0, 0, 0, 1}, `{"v":"a"}`, uint8(0))
	f.Add([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1}, []byte{}, ``, uint8(1))
	f.Add([]byte{1, 2, 3}, []byte{9, 9, 9, 9, 9, 9}, `{`, uint8(2))
	f.Fuzz(func(t *testing.T, guardedKeys, allowedKeys []byte, comment string, mode uint8) {
		var g, a []nftables.SetElement
		for k := range slices.Chunk(guardedKeys, 6) {
			g = append(g, nftables.SetElement{Key: k, Comment: comment})
		}
		for k := range slices.Chunk(allowedKeys, 6) {
			a = append(a, nftables.SetElement{Key: k})
		}
		s, err := stateOf(netguard.Mode(mode%3), g, a)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("stateOf accepted sets that give an invalid state: %v", err)
		}
	})
}

// FuzzBuild: any State that Validate accepts builds (or is refused with
// ErrInvalidState for metadata too long), and its rules read back as its
// mode.
func FuzzBuild(f *testing.F) {
	f.Add(uint8(0), []byte{2, 0, 0, 0, 0, 1}, "vm", "vif1.0", []byte{198, 18, 0, 1}, true)
	f.Add(uint8(1), []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1}, "", "", []byte{}, false)
	f.Add(uint8(2), []byte{}, "x", "", []byte{0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, true)
	f.Add(uint8(7), []byte{2, 0, 0}, "", "", []byte{}, true)
	f.Fuzz(func(t *testing.T, mode uint8, macs []byte, vm, port string, addr []byte, allow bool) {
		s := netguard.State{Mode: netguard.Mode(mode)}
		var addrs []netip.Addr
		if a, ok := netip.AddrFromSlice(addr); ok {
			addrs = append(addrs, a)
		}
		for k := range slices.Chunk(macs, 6) {
			s.Rules = append(s.Rules, netguard.Rule{Allow: allow,
				VIF: netguard.VIF{VM: vm, Port: port, MAC: net.HardwareAddr(k), Addrs: addrs}})
		}
		if err := s.Validate(); err != nil {
			if !errors.Is(err, netguard.ErrInvalidState) {
				t.Fatalf("Validate error not ErrInvalidState: %v", err)
			}
			return
		}
		rs, err := build("xenha", s)
		if err != nil {
			if !errors.Is(err, netguard.ErrInvalidState) {
				t.Fatalf("build error not ErrInvalidState: %v", err)
			}
			return
		}
		got := map[string][]string{}
		for _, r := range rs.rules {
			got[r.Chain.Name] = append(got[r.Chain.Name], describe(r.Exprs))
		}
		m, err := modeOf(got)
		if err != nil || m != s.Mode {
			t.Fatalf("rules of mode %s read back as %s, %v", s.Mode, m, err)
		}
		back, err := stateOf(s.Mode, rs.gElems, rs.aElems)
		if err != nil {
			t.Fatalf("stateOf(build(s)) = %v", err)
		}
		if len(back.Rules) != len(s.Rules) {
			t.Fatalf("%d rules built, %d read back", len(s.Rules), len(back.Rules))
		}
	})
}
