// Package storagetest provides a fake of shared storage for tests of code that
// hands volumes between hosts, and a conformance suite for storage.Backend
// implementations.
//
// A [Store] models one storage system seen from several simulated hosts: each
// [Store.Backend] is one host's view. The store remembers, per volume, which
// hosts hold it and the highest generation it has seen, so it behaves like
// storage that fences old writers (SCSI-3 persistent reservations keyed by
// generation): an attach with a higher generation takes the volume over and the
// old holder's writes fail from then on. [Unenforced] makes it behave like NFS
// or NBD instead, where nothing stops two writers and only the cluster's
// discipline keeps them apart; [Store.Writers] lets invariant checks catch a
// second writer either way. [Store.RoleBackend] models DRBD: one primary, and a
// promotion that is refused while another host is primary and not fenced.
//
// Failures, hangs and delays can be injected per host, volume and operation
// ([Store.Inject]); every call is logged ([Store.Calls]).
//
// [Run] is the conformance suite: give it a [Subject] (one or two backends
// sharing a volume, and what they promise) and it checks the storage.Backend
// contract. The fake passes it; so must every backend in this module.
// [QEMUImgSize] adds what the suite cannot see: that QEMU opens the Source a
// real backend returns.
package storagetest
