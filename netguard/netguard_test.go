package netguard_test

import (
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/xenha/xenha/netguard"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	macC = net.HardwareAddr{2, 0, 0, 0, 0, 0xc}
)

func TestAllowedPerMode(t *testing.T) {
	rules := []netguard.Rule{{VIF: netguard.VIF{MAC: macA}, Allow: true}, {VIF: netguard.VIF{MAC: macB}}}
	for _, c := range []struct {
		mode           netguard.Mode
		mac            net.HardwareAddr
		allow, guarded bool
	}{
		{netguard.PerVIF, macA, true, true},
		{netguard.PerVIF, macB, false, true},
		{netguard.PerVIF, macC, true, false},
		{netguard.BlockAll, macA, false, true},
		{netguard.BlockAll, macC, true, false},
		{netguard.AllowAll, macB, true, true},
		{netguard.PerVIF, net.HardwareAddr{2, 0, 0, 0, 0, 0xA}, true, true}, // case of the text form is irrelevant
	} {
		allow, guarded := netguard.State{Mode: c.mode, Rules: rules}.Allowed(c.mac)
		if allow != c.allow || guarded != c.guarded {
			t.Errorf("%s: Allowed(%s) = %v, %v; want %v, %v", c.mode, c.mac, allow, guarded, c.allow, c.guarded)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := netguard.State{Rules: []netguard.Rule{{VIF: netguard.VIF{MAC: macA}}, {VIF: netguard.VIF{MAC: macB}}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid state: %v", err)
	}
	for name, s := range map[string]netguard.State{
		"duplicate": {Rules: []netguard.Rule{{VIF: netguard.VIF{MAC: macA}}, {VIF: netguard.VIF{MAC: slices.Clone(macA)}, Allow: true}}},
		"short":     {Rules: []netguard.Rule{{VIF: netguard.VIF{VM: "x", MAC: macA[:5]}}}},
		"none":      {Rules: []netguard.Rule{{VIF: netguard.VIF{VM: "x"}}}},
		"mode":      {Mode: netguard.Mode(-1)},
	} {
		if err := s.Validate(); !errors.Is(err, netguard.ErrInvalidState) {
			t.Errorf("%s: Validate = %v, want ErrInvalidState", name, err)
		}
	}
}

func TestNormalizeDoesNotTouchInput(t *testing.T) {
	s := netguard.State{Rules: []netguard.Rule{{VIF: netguard.VIF{MAC: macB}}, {VIF: netguard.VIF{MAC: macA}}}}
	n := s.Normalize()
	if n.Rules[0].VIF.MAC.String() != macA.String() {
		t.Errorf("Normalize did not sort by MAC: %v", n.Rules)
	}
	if s.Rules[0].VIF.MAC.String() != macB.String() {
		t.Error("Normalize reordered its receiver's rules")
	}
}

// FuzzValidate: any state, however malformed, is judged without panicking;
// one that passes has distinct 6-byte MACs, and Allowed agrees with its
// rules.
func FuzzValidate(f *testing.F) {
	f.Add(0, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}, []byte{1, 0})
	f.Add(1, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1}, []byte{1, 1})
	f.Add(7, []byte{1, 2, 3}, []byte{})
	f.Add(-3, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, mode int, macs, allow []byte) {
		s := netguard.State{Mode: netguard.Mode(mode)}
		for i := 0; i < len(macs); i += 6 {
			r := netguard.Rule{VIF: netguard.VIF{MAC: net.HardwareAddr(macs[i:min(i+6, len(macs))])}}
			if i/6 < len(allow) {
				r.Allow = allow[i/6]%2 == 1
			}
			s.Rules = append(s.Rules, r)
		}
		err := s.Validate()
		if err != nil {
			if !errors.Is(err, netguard.ErrInvalidState) {
				t.Fatalf("Validate error does not wrap ErrInvalidState: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, r := range s.Rules {
			if len(r.VIF.MAC) != 6 || seen[r.VIF.MAC.String()] {
				t.Fatalf("Validate accepted MAC %x", r.VIF.MAC)
			}
			seen[r.VIF.MAC.String()] = true
			allowed, guarded := s.Allowed(r.VIF.MAC)
			want := r.Allow
			switch s.Mode {
			case netguard.BlockAll:
				want = false
			case netguard.AllowAll:
				want = true
			}
			if !guarded || allowed != want {
				t.Fatalf("Allowed(%s) = %v, %v under %s; rule says allow=%v", r.VIF.MAC, allowed, guarded, s.Mode, r.Allow)
			}
		}
	})
}
