// Package netguard decides which VMs may talk on a host's bridge.
//
// In the classic Xen HA setup both hosts of a pair run the same VMs and only the
// active host may let them reach the wire; the passive host drops their IP and
// ARP traffic. A [Guard] is that switch, done as desired state: [Guard.Apply]
// takes the complete [State] (every guarded VM interface, each allowed or
// blocked) and puts it in force atomically; [Guard.Current] reads back what is
// in force. Apply is idempotent. Interfaces are matched by MAC, so a VM
// re-created with a new vif name is still covered, and a guarded MAC that is not
// allowed is blocked, so there is no window in which traffic passes by default.
// Host (dom0) traffic is never touched.
//
// It is also network fencing: a host that loses quorum blocks its VMs at once,
// long before a power fence lands.
//
// The nftables implementation (bridge family) is in this package's nft
// sub-package; a fake and the conformance suite are in netguard/netguardtest.
// Guards that can announce a VM's new location (gratuitous ARP, unsolicited
// neighbour advertisement) implement [Announcer]; they refuse a VIF that is
// still blocked with [ErrBlocked], so the order is Apply, then Announce.
package netguard
