// Package xenha turns a handful of Xen or KVM hosts into a self-healing pool.
//
// Every dom0 runs a program that embeds an [github.com/xenha/xenha/ha.Cluster].
// The members replicate one truth about hosts, VMs, volumes and fences through
// Raft; the Raft leader is the pool master. When a host dies, the master marks it
// suspect, fences it (power off through its BMC, a fence agent, a storage poison
// pill, or its own watchdog), hands its volumes over, places its VMs on the
// survivors, and their host agents start them and unblock their network, in
// about a second. A VM never runs on two hosts: a host runs VMs only while it
// holds a lease renewed through the replicated log, and nothing is recovered
// before the fence is proven.
//
// # Packages
//
// Dependencies point one way: examples → ha → {fence, storage, netguard, xenctl}.
// The leaves never import ha, and only xenctl/libvirt uses cgo.
//
//   - ha: the Cluster: membership, replicated state, leases, failure detection,
//     fencing, placement, restart, migration, maintenance, events.
//   - ha/hatest: an in-process multi-host cluster for embedders' tests.
//   - fence: the Fencer interface, proofs and escalation chains; ipmi, agent,
//     watchdog, sbd and libvirt methods in sub-packages.
//   - storage: the Backend interface with one writer per volume; iscsi, nfs, nbd
//     and drbd in sub-packages.
//   - netguard: the Guard that blocks or unblocks VM traffic (IP and ARP) on the
//     bridge; nftables in netguard/nft.
//   - xenctl: the Hypervisor interface; libvirt in xenctl/libvirt.
//   - examples: a daemon, a witness, the seeds' active/passive gateway pair, and
//     the demo behind `make demo`.
//
// Every plug-in interface has a fake and a conformance suite in a sibling
// xxxtest package (fencetest, storagetest, netguardtest, xenctltest), like
// net/http/httptest and testing/fstest: embedders test their own code against
// the fakes and their own implementations against the suites.
package xenha
