// Package nbd attaches volumes exported over the Network Block Device
// protocol, from nbd-server, qemu-nbd or any other newstyle server.
//
// Health and export discovery speak the protocol directly: a pure-Go client
// performs the fixed newstyle handshake, asks NBD_OPT_LIST or NBD_OPT_INFO
// (size, read-only and other transmission flags), and aborts without ever
// opening the export ([ListExports], [ExportInfo]).
//
// A [Backend] attaches in one of two modes. In network-disk mode (the
// default) nothing happens on the host: Attach checks that the export exists
// and returns a storage.Source of type network, protocol "nbd", that QEMU
// opens itself (libvirt's <disk type='network'><source protocol='nbd'>). In
// host mode ([HostMode]) Attach runs nbd-client to connect an /dev/nbdN device
// and returns it as a block source; Detach disconnects it.
//
// Volume parameters:
//
//	server   host name or address of the NBD server (required)
//	port     TCP port (default 10809)
//	export   export name (required)
//	device   /dev/nbdN to use in host mode (required there)
//	readonly "true" to attach read-only
//
// # One writer
//
// The NBD protocol has no reservations: a server lets every client write. A
// Backend refuses an attach with a generation lower than the highest it has
// seen for the volume (storage.ErrStaleGeneration), but it cannot stop another
// host. The real fencing token for NBD volumes is the generation in xenha's
// replicated log, together with fencing the old host before the volume moves.
package nbd
