// Package hostd is a xenha host daemon's configuration and life, shared by
// examples/daemon (the smallest embedding) and examples/xenha (the
// operator's binary). It reads one JSON file (File; testdata/xen-a.json is
// a sample), strictly: unknown keys, wrong types and inconsistent values
// are refused naming the field. It wires ha with libvirt (xenctl/libvirt),
// fence levels of every method the library has (fence/ipmi, fence/sbd,
// fence/agent, fence/libvirt, fence/watchdog) in one fence.Chain, the
// nftables guard (netguard/nft), the storage backends it names
// (storage/iscsi, nfs, nbd, drbd) and, if the file names one, the hardware
// watchdog fed the host's lease. Run forms or joins the pool, logs the
// cluster's events, and leaves cleanly when its context ends.
//
// File.Check is what `daemon -check` prints: every problem, one per field,
// including timing relations and fence devices that cannot be reached.
//
// Embedders copy build (File → ha.Config with its plug-ins) and run (New,
// Bootstrap or Join, Subscribe, Close); the rest is flag handling.
package hostd
