// Package nfs attaches disk images on NFS exports for xenha and speaks
// NFSv3 in pure Go to probe an export without mounting it.
//
// # Volumes
//
// A volume of Kind "nfs" names an image file by three parameters, and may
// carry mount options and ports for the probe:
//
//	server   "198.18.0.10"
//	export   "/srv/vm"
//	path     "vm1.img" (inside the export; no "..")
//	options  "nolock,timeo=300"             (HostMount only)
//	portmap_port, mount_port, nfs_port      (probe only; default: ask rpcbind on 111)
//
// # Two modes
//
// [NetworkDisk] (the default) leaves NFS to QEMU's libnfs driver: Attach
// probes the export and returns storage.Source{Type: network, Protocol:
// "nfs", Name: "/srv/vm/vm1.img", Hosts: server}. libnfs finds the MOUNT and
// NFS services through rpcbind on port 111 and takes no port in the URL, so
// the source carries none and the server must register with rpcbind.
//
// [HostMount] mounts server:/export on /run/xenha/nfs/<volume ID> with
// `mount -t nfs -o vers=3,proto=tcp,hard,timeo=600,retrans=2[,options]`
// and returns the image as a file source; a mount left by an earlier process
// is adopted from /proc/self/mounts. Without rpc.statd, mount.nfs refuses
// NFSv3 unless "nolock" is among the options; the error says so. "hard"
// means a dead server blocks I/O instead of failing it, so Health stats the
// image through the mount in a goroutine bounded by a deadline and reports a
// hung mount as storage.ErrUnreachable; a stat that is still stuck makes
// later probes of the same file answer at once instead of piling up. mount
// and umount are bounded too (WithMountTimeout); a umount that hangs on a
// dead server is forced with `umount -f -l`, which Detach may do because the
// VM using the image has stopped by then.
//
// # One writer
//
// NFS has nothing that refuses an old writer (no reservation, no lease a
// v3 client honours), so the backend only refuses generations older than
// one it has seen on this host (storage.ErrStaleGeneration) and the cluster
// keeps the old host away by fencing it before recovery. The storagetest
// subject says so: StaleGenerations, not Exclusive.
//
// # Probe
//
// [Probe] implements what a health check needs of ONC RPC (RFC 5531, record
// marking over TCP, AUTH_SYS) and XDR (RFC 4506): rpcbind GETPORT for MOUNT
// v3 and NFS v3 (unless ports are given), MOUNT3 MNT of the export for its
// root handle, NFSv3 NULL, LOOKUP of each component of the path and GETATTR
// of the image, then UMNT so the server's mount list does not grow. A
// server that does not answer is storage.ErrUnreachable; an export it
// refuses (MNT3ERR_NOENT, MNT3ERR_ACCES) or a missing image is
// storage.ErrNotFound.
package nfs
