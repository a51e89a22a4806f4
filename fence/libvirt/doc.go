// Package libvirt fences a host that is itself a virtual machine (a nested
// test cluster, or dom0s run as guests of a lab hypervisor) by destroying its
// domain on the outer hypervisor. It works through an xenctl.Hypervisor, so
// it carries no cgo: the embedder passes an xenctl/libvirt connection, tests
// pass an xenctl/xenctltest host.
//
// Fence destroys the domain and returns a proof only after the outer
// hypervisor reports the domain not active (shut off or crashed). A domain
// that does not exist is an error, not a proof — unless the target is
// marked transient, since a transient domain vanishes when it stops.
package libvirt
