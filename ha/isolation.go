package ha

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/xenha/xenha/netguard"
)

// Isolation and the single network owner: a VM's traffic is let through on
// at most one host, and a host that loses its lease cuts its VMs off. The
// guard of a host allows a VM's MACs only while the VM is assigned here at this
// host's epoch, executes here, and the lease is valid; everything else the
// cluster knows is blocked. When the lease is about to run out the whole
// guard goes to BlockAll before any VM is paused or stopped, so a VM the
// majority restarts elsewhere never meets its twin on the wire.

// guardKeeper puts the desired guard state in force and announces VIFs that
// were just unblocked.
type guardKeeper struct {
	g netguard.Guard

	mu      sync.Mutex
	last    netguard.State
	applied bool
}

// desiredGuard computes the guard state: a rule for each MAC of each known
// VM, allowed when allow says so; BlockAll when isolating.
func desiredGuard(v view, allow map[string]bool, blockAll bool) netguard.State {
	st := netguard.State{Mode: netguard.PerVIF}
	if blockAll {
		st.Mode = netguard.BlockAll
	}
	seen := map[string]bool{}
	for _, name := range slices.Sorted(mapKeys(v.vms)) {
		vm := v.vms[name]
		var addrs []netip.Addr
		for _, s := range vm.Spec.Addrs {
			if a, err := netip.ParseAddr(s); err == nil {
				addrs = append(addrs, a)
			}
		}
		for _, m := range vm.Spec.MACs {
			mac, err := net.ParseMAC(m)
			if err != nil || len(mac) != 6 || seen[mac.String()] {
				continue // PutVM validates MACs; a duplicate stays blocked under its first owner
			}
			seen[mac.String()] = true
			st.Rules = append(st.Rules, netguard.Rule{
				VIF:   netguard.VIF{VM: name, MAC: mac, Addrs: addrs},
				Allow: allow[name] && !blockAll,
			})
		}
	}
	return st.Normalize()
}

// apply puts the state for v in force if it changed, then announces the
// VIFs it newly allowed (gratuitous ARP / unsolicited NA), when the guard
// can.
func (k *guardKeeper) apply(ctx context.Context, v view, allow map[string]bool, blockAll bool) error {
	if k.g == nil {
		return nil
	}
	st := desiredGuard(v, allow, blockAll)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.applied && sameGuard(k.last, st) {
		return nil
	}
	if err := k.g.Apply(ctx, st); err != nil {
		return fmt.Errorf("apply network guard (%s, %d VIFs): %w", st.Mode, len(st.Rules), err)
	}
	prev, had := k.last, k.applied
	k.last, k.applied = st, true
	an, ok := k.g.(netguard.Announcer)
	if !ok || st.Mode == netguard.BlockAll {
		return nil
	}
	for _, r := range st.Rules {
		if !r.Allow || len(r.VIF.Addrs) == 0 {
			continue
		}
		if had && prev.Mode == netguard.PerVIF {
			if was, _ := prev.Allowed(r.VIF.MAC); was {
				continue
			}
		}
		// A failed announcement only delays the switches' learning.
		_ = an.Announce(ctx, r.VIF)
	}
	return nil
}

func sameGuard(a, b netguard.State) bool {
	if a.Mode != b.Mode || len(a.Rules) != len(b.Rules) {
		return false
	}
	for i := range a.Rules {
		if a.Rules[i].Allow != b.Rules[i].Allow || a.Rules[i].VIF.VM != b.Rules[i].VIF.VM ||
			a.Rules[i].VIF.MAC.String() != b.Rules[i].VIF.MAC.String() {
			return false
		}
	}
	return true
}
