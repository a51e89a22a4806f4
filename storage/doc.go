// Package storage makes a VM's volumes usable on the host that runs it, and only
// there.
//
// A [Backend] attaches a [Volume] on its own host and returns the [Source] that
// goes into the domain XML: a host path (after an iSCSI login, an NFS mount, an
// nbd-client connect or a DRBD promote) or a network disk that QEMU opens itself
// (libvirt's <disk type='network'>). Detach releases it; Health probes the
// storage without attaching.
//
// # One writer
//
// Every volume has a generation, a fencing token that xenha bumps in its
// replicated log whenever the volume's writer changes, and only after the old
// writer was fenced. A backend refuses an attach with a generation lower than one
// it has seen ([ErrStaleGeneration]), and where the storage can enforce it (SCSI-3
// persistent reservations keyed by generation, DRBD's single primary) it makes
// the storage itself refuse the old writer. Role-based backends also implement
// [Promoter].
//
// Implementations live in sub-packages (iscsi, nfs, nbd, drbd); a fake with
// shared "storage" across simulated hosts, and the conformance suite, live in
// storage/storagetest.
package storage
