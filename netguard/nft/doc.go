// Package nft is the nftables implementation of [netguard.Guard]: one table
// of the bridge family, owned by xenha, blocks or allows each guarded VM's
// Ethernet frames (so IPv4, IPv6 and ARP alike) on the host's bridges. It
// replaces the iptables FORWARD plus arptables pair of the classic Heartbeat
// set-up with one rule set that is replaced atomically.
//
// The table, by default "xenha", holds two sets of MACs and three base chains:
//
//	table bridge xenha {
//	    set guarded { type ether_addr }        # every VIF in the State, with its VM, port, addresses
//	    set allowed { type ether_addr }        # the guarded VIFs whose traffic may pass
//	    set guarded_ports { type ifname }      # the ports the State names
//	    set allowed_ports { type ifname }      # ... of allowed VIFs
//	    chain forward { type filter hook forward priority -250; policy accept;
//	        ether saddr @guarded ether saddr != @allowed drop
//	        ether daddr @guarded ether daddr != @allowed drop
//	        oifname @guarded_ports oifname != @allowed_ports drop }
//	    chain input  { ... ether saddr ... drop }                            # VM -> dom0
//	    chain output { ... ether daddr ...; ether saddr ...; oifname ... }   # dom0 -> VM
//	}
//
// Matching is by MAC, so a VM re-created with a new vif name is still blocked,
// and a guarded MAC is blocked unless it is also in the allowed set. The port
// rules only add what MACs cannot catch: frames flooded to every port
// (broadcast ARP requests) do not reach a blocked VM's port either. Frames of MACs that are not guarded, among them dom0's own, are
// never touched. [netguard.BlockAll] drops every guarded MAC whatever the
// allowed set says; [netguard.AllowAll] has no drop rule.
//
// [Guard.Apply] sends the whole table (create, delete, recreate) in a single
// netlink batch, which the kernel commits atomically; [Guard.Current] reads the
// sets and rules back. The table lives in the kernel: a guard that restarts
// leaves it in force until its next Apply.
//
// [Guard.Announce] sends a gratuitous ARP and an IPv6 unsolicited neighbour
// advertisement for a newly allowed VIF on the bridge, from the VM's MAC,
// through a raw packet socket.
//
// Known limits: a re-created VIF whose new port the State does not name yet
// still receives flooded frames (it cannot answer them: everything it sends
// is dropped) until the next Apply names the port. Rules cover every bridge of
// the host (see [New]).
package nft
