package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Errors that callers branch on.
var (
	// ErrInvalidState: the desired state is malformed (a bad or duplicate MAC).
	ErrInvalidState = errors.New("netguard: invalid state")
	// ErrUnavailable: the packet filter could not be programmed or read.
	ErrUnavailable = errors.New("netguard: packet filter unavailable")
	// ErrBlocked: an announcement was asked for a VIF whose traffic is
	// blocked; its frames would be dropped. Unblock it (Apply) first.
	ErrBlocked = errors.New("netguard: VIF is blocked")
)

// VIF is one guarded VM network interface.
type VIF struct {
	VM  string
	MAC net.HardwareAddr
	// Port optionally names the bridge port (vif3.0, vnet0). Matching is by MAC;
	// the port is informational and used for announcements.
	Port string
	// Addrs are the VM's addresses on this interface, announced when it is
	// unblocked.
	Addrs []netip.Addr
}

// Rule is one VIF's desired verdict.
type Rule struct {
	VIF   VIF
	Allow bool
}

// Mode selects a whole-host policy.
type Mode int

// Modes. PerVIF is the zero value.
const (
	// PerVIF applies each rule's verdict.
	PerVIF Mode = iota
	// BlockAll blocks every guarded VIF whatever its rule says: the passive
	// host of an active/passive pair, or a host isolating itself.
	BlockAll
	// AllowAll allows every guarded VIF: the active host of a pair.
	AllowAll
)

func (m Mode) String() string {
	switch m {
	case BlockAll:
		return "block-all"
	case AllowAll:
		return "allow-all"
	}
	return "per-vif"
}

// State is the complete desired (or read-back) guard state of one host.
type State struct {
	Mode  Mode
	Rules []Rule
}

// Allowed reports whether traffic of the VIF with this MAC passes under s.
// A MAC that s does not guard is not blocked by it.
func (s State) Allowed(mac net.HardwareAddr) (allowed, guarded bool) {
	for _, r := range s.Rules {
		if strings.EqualFold(r.VIF.MAC.String(), mac.String()) {
			switch s.Mode {
			case BlockAll:
				return false, true
			case AllowAll:
				return true, true
			}
			return r.Allow, true
		}
	}
	return true, false
}

// Validate checks that every rule has a MAC and that no MAC repeats.
func (s State) Validate() error {
	seen := make(map[string]bool, len(s.Rules))
	for _, r := range s.Rules {
		if len(r.VIF.MAC) != 6 {
			return fmt.Errorf("%w: VIF of VM %q has MAC %q, want 6 bytes", ErrInvalidState, r.VIF.VM, r.VIF.MAC)
		}
		k := r.VIF.MAC.String()
		if seen[k] {
			return fmt.Errorf("%w: MAC %s appears twice (VM %q)", ErrInvalidState, k, r.VIF.VM)
		}
		seen[k] = true
	}
	if s.Mode < PerVIF || s.Mode > AllowAll {
		return fmt.Errorf("%w: unknown mode %d", ErrInvalidState, int(s.Mode))
	}
	return nil
}

// Normalize returns s with rules sorted by MAC, so that two states with the same
// content compare equal.
func (s State) Normalize() State {
	out := State{Mode: s.Mode, Rules: slices.Clone(s.Rules)}
	slices.SortFunc(out.Rules, func(a, b Rule) int { return strings.Compare(a.VIF.MAC.String(), b.VIF.MAC.String()) })
	return out
}

// Guard puts a host's desired network state in force.
type Guard interface {
	// Apply replaces the whole state atomically: after it returns nil, exactly
	// s is in force; after an error, the previous state still is.
	Apply(ctx context.Context, s State) error
	// Current reads back the state in force.
	Current(ctx context.Context) (State, error)
}

// Announcer is implemented by guards that can announce a VIF's location after
// unblocking it: a gratuitous ARP for IPv4 addresses and an unsolicited
// neighbour advertisement for IPv6.
type Announcer interface {
	Announce(ctx context.Context, vif VIF) error
}
