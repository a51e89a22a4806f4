package nfs

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/xenha/xenha/storage"
)

// Ports the probe uses unless told otherwise.
const (
	// PortmapPort is where rpcbind answers; MOUNT and NFS ports are looked up
	// there unless configured.
	PortmapPort = 111
	// DefaultProbeTimeout bounds a probe whose context has no deadline.
	DefaultProbeTimeout = 5 * time.Second

	maxFileHandle = 64 // NFS3_FHSIZE
)

// ProbeOption configures Probe.
type ProbeOption func(*probeConfig)

type probeConfig struct {
	portmapPort, mountPort, nfsPort int
	timeout                         time.Duration
	// dial and xid replace the network and the random transaction IDs in
	// tests that record or replay a server's answers.
	dial func(ctx context.Context, addr string) (net.Conn, error)
	xid  uint32
}

// WithPortmapPort sets rpcbind's port (default 111).
func WithPortmapPort(port int) ProbeOption { return func(c *probeConfig) { c.portmapPort = port } }

// WithMountPort skips the portmapper for MOUNT v3 and uses port.
func WithMountPort(port int) ProbeOption { return func(c *probeConfig) { c.mountPort = port } }

// WithNFSPort skips the portmapper for NFS v3 and uses port.
func WithNFSPort(port int) ProbeOption { return func(c *probeConfig) { c.nfsPort = port } }

// WithProbeTimeout bounds a probe whose context has no earlier deadline.
func WithProbeTimeout(d time.Duration) ProbeOption { return func(c *probeConfig) { c.timeout = d } }

// FileType is an NFSv3 ftype3.
type FileType uint32

// File types the probe reports.
const (
	TypeRegular   FileType = 1
	TypeDirectory FileType = 2
)

// Attr is the part of an NFSv3 fattr3 a health probe cares about.
type Attr struct {
	Type   FileType
	Mode   uint32
	Size   uint64
	FileID uint64
}

// MountError is a MOUNT3 MNT the server refused, with its mountstat3.
type MountError struct {
	Server, Export string
	Status         uint32
}

func (e *MountError) Error() string {
	return fmt.Sprintf("nfs: server %s refused to mount %q: %s (mountstat3 %d)", e.Server, e.Export, mountStatText(e.Status), e.Status)
}

// Unwrap: a missing or forbidden export is storage.ErrNotFound, since the
// server answered and this host cannot have the volume there.
func (e *MountError) Unwrap() error {
	switch e.Status {
	case 1, 2, 13, 20:
		return storage.ErrNotFound
	}
	return nil
}

func mountStatText(s uint32) string {
	switch s {
	case 1:
		return "not owner (MNT3ERR_PERM); allow this host in the export's clients"
	case 2:
		return "no such export (MNT3ERR_NOENT); check the export path"
	case 5:
		return "I/O error on the server"
	case 13:
		return "access denied (MNT3ERR_ACCES); allow this host in the export's clients"
	case 20:
		return "not a directory (MNT3ERR_NOTDIR)"
	case 22:
		return "invalid argument (MNT3ERR_INVAL)"
	case 63:
		return "path too long (MNT3ERR_NAMETOOLONG)"
	case 10004:
		return "operation not supported (MNT3ERR_NOTSUPP)"
	case 10006:
		return "server fault (MNT3ERR_SERVERFAULT)"
	}
	return "unknown status"
}

// StatusError is an NFSv3 procedure that failed with an nfsstat3.
type StatusError struct {
	Server, Op, Name string
	Status           uint32
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("nfs: %s %q on %s: %s (nfsstat3 %d)", e.Op, e.Name, e.Server, nfsStatText(e.Status), e.Status)
}

// Unwrap maps a missing or forbidden file to storage.ErrNotFound.
func (e *StatusError) Unwrap() error {
	switch e.Status {
	case 2, 13, 20, 70:
		return storage.ErrNotFound
	}
	return nil
}

func nfsStatText(s uint32) string {
	switch s {
	case 1:
		return "not owner"
	case 2:
		return "no such file or directory"
	case 5:
		return "I/O error on the server"
	case 13:
		return "permission denied"
	case 20:
		return "not a directory"
	case 70:
		return "stale file handle"
	case 10008:
		return "server busy, try later (NFS3ERR_JUKEBOX)"
	}
	return "error"
}

// Probe checks that disk (a path relative to export, such as "vm1.img")
// is reachable through NFSv3 on server ("host" or "host:portmapper-port"),
// speaking the protocol itself: rpcbind GETPORT (unless ports are given),
// MOUNT3 MNT of export, NFSv3 NULL, LOOKUP of each path component and
// GETATTR of the file, then UMNT. A silent server is storage.ErrUnreachable;
// a missing export or file is storage.ErrNotFound.
func Probe(ctx context.Context, server, export, disk string, opts ...ProbeOption) (Attr, error) {
	cfg := probeConfig{portmapPort: PortmapPort, timeout: DefaultProbeTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	host := server
	if h, p, err := net.SplitHostPort(server); err == nil {
		host = h
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return Attr{}, fmt.Errorf("nfs: server %q has a bad port: %w", server, storage.ErrInvalidVolume)
		}
		cfg.portmapPort = n
	}
	if host == "" || export == "" || !strings.HasPrefix(export, "/") {
		return Attr{}, fmt.Errorf("nfs: server %q export %q: need a host and an absolute export path: %w", server, export, storage.ErrInvalidVolume)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	if cfg.mountPort == 0 || cfg.nfsPort == 0 {
		pm, err := dialRPC(ctx, net.JoinHostPort(host, strconv.Itoa(cfg.portmapPort)), &cfg)
		if err != nil {
			return Attr{}, err
		}
		if cfg.mountPort == 0 {
			cfg.mountPort, err = getPort(ctx, pm, progMount, 3)
		}
		if err == nil && cfg.nfsPort == 0 {
			cfg.nfsPort, err = getPort(ctx, pm, progNFS, 3)
		}
		pm.close()
		if err != nil {
			return Attr{}, err
		}
	}

	mc, err := dialRPC(ctx, net.JoinHostPort(host, strconv.Itoa(cfg.mountPort)), &cfg)
	if err != nil {
		return Attr{}, err
	}
	defer mc.close()
	root, err := mount(ctx, mc, host, export)
	if err != nil {
		return Attr{}, err
	}
	// Unmount even when the NFS half fails: the server keeps a mount list
	// (showmount -a) and a probe every few seconds must not grow it.
	defer func() { _ = unmount(ctx, mc, export) }()

	nc, err := dialRPC(ctx, net.JoinHostPort(host, strconv.Itoa(cfg.nfsPort)), &cfg)
	if err != nil {
		return Attr{}, err
	}
	defer nc.close()
	if _, err := nc.call(ctx, "NFSv3 NULL", progNFS, 3, 0, nil); err != nil {
		return Attr{}, err
	}
	fh := root
	name := export
	for _, part := range strings.Split(strings.Trim(disk, "/"), "/") {
		if part == "" {
			continue
		}
		if part == ".." {
			return Attr{}, fmt.Errorf("nfs: disk path %q leaves the export: %w", disk, storage.ErrInvalidVolume)
		}
		name = name + "/" + part
		fh, err = lookup(ctx, nc, fh, part, name)
		if err != nil {
			return Attr{}, err
		}
	}
	return getattr(ctx, nc, fh, name)
}

// getPort asks rpcbind (portmapper v2 GETPORT) for prog's TCP port. Zero
// means the program is not registered: the server runs no such service.
func getPort(ctx context.Context, c *rpcConn, prog, vers uint32) (int, error) {
	var w xdrWriter
	w.u32(prog)
	w.u32(vers)
	w.u32(6) // IPPROTO_TCP
	w.u32(0)
	res, err := c.call(ctx, "portmap GETPORT", progPortmap, 2, 3, w.b)
	if err != nil {
		return 0, err
	}
	r := &xdrReader{b: res}
	port := r.u32("port")
	if err := r.done("GETPORT reply"); err != nil {
		return 0, fmt.Errorf("nfs: portmap GETPORT on %s: %w", c.addr, err)
	}
	if port == 0 || port > 65535 {
		return 0, fmt.Errorf("nfs: program %d v%d is not registered with rpcbind on %s: %w; start the NFS server", prog, vers, c.addr, storage.ErrUnreachable)
	}
	return int(port), nil
}

func mount(ctx context.Context, c *rpcConn, host, export string) ([]byte, error) {
	var w xdrWriter
	w.str(export)
	res, err := c.call(ctx, "MOUNT3 MNT", progMount, 3, 1, w.b)
	if err != nil {
		return nil, err
	}
	fh, err := decodeMountReply(res)
	if err != nil {
		if me, ok := err.(*MountError); ok {
			me.Server, me.Export = host, export
			return nil, me
		}
		return nil, fmt.Errorf("nfs: MOUNT3 MNT %q on %s: %w", export, c.addr, err)
	}
	return fh, nil
}

// decodeMountReply decodes mountres3: a status, then on success the root
// file handle and the auth flavors the export accepts.
func decodeMountReply(res []byte) ([]byte, error) {
	r := &xdrReader{b: res}
	st := r.u32("mount status")
	if r.err != nil {
		return nil, r.err
	}
	if st != 0 {
		return nil, &MountError{Status: st}
	}
	fh := r.opaque(maxFileHandle, "file handle")
	n := r.u32("auth flavor count")
	if n > 64 {
		r.fail("%d auth flavors", n)
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.u32("auth flavor")
	}
	if err := r.done("MNT reply"); err != nil {
		return nil, err
	}
	if len(fh) == 0 {
		return nil, fmt.Errorf("%w: empty root file handle", ErrMalformedReply)
	}
	return fh, nil
}

func unmount(ctx context.Context, c *rpcConn, export string) error {
	var w xdrWriter
	w.str(export)
	_, err := c.call(ctx, "MOUNT3 UMNT", progMount, 3, 3, w.b)
	return err
}

func lookup(ctx context.Context, c *rpcConn, dir []byte, part, name string) ([]byte, error) {
	var w xdrWriter
	w.opaque(dir)
	w.str(part)
	res, err := c.call(ctx, "NFSv3 LOOKUP", progNFS, 3, 3, w.b)
	if err != nil {
		return nil, err
	}
	fh, err := decodeLookupReply(res)
	if se, ok := err.(*StatusError); ok {
		se.Server, se.Op, se.Name = c.addr, "LOOKUP", name
		return nil, se
	}
	if err != nil {
		return nil, fmt.Errorf("nfs: LOOKUP %q on %s: %w", name, c.addr, err)
	}
	return fh, nil
}

// decodeLookupReply decodes LOOKUP3res: on success the object's handle and
// optional attributes of the object and the directory; on failure the
// directory's optional attributes.
func decodeLookupReply(res []byte) ([]byte, error) {
	r := &xdrReader{b: res}
	st := r.u32("status")
	if st != 0 && r.err == nil {
		return nil, &StatusError{Status: st}
	}
	fh := r.opaque(maxFileHandle, "file handle")
	postOpAttr(r)
	postOpAttr(r)
	if err := r.done("LOOKUP reply"); err != nil {
		return nil, err
	}
	return fh, nil
}

func getattr(ctx context.Context, c *rpcConn, fh []byte, name string) (Attr, error) {
	var w xdrWriter
	w.opaque(fh)
	res, err := c.call(ctx, "NFSv3 GETATTR", progNFS, 3, 1, w.b)
	if err != nil {
		return Attr{}, err
	}
	a, err := decodeGetattrReply(res)
	if se, ok := err.(*StatusError); ok {
		se.Server, se.Op, se.Name = c.addr, "GETATTR", name
		return Attr{}, se
	}
	if err != nil {
		return Attr{}, fmt.Errorf("nfs: GETATTR %q on %s: %w", name, c.addr, err)
	}
	return a, nil
}

func decodeGetattrReply(res []byte) (Attr, error) {
	r := &xdrReader{b: res}
	st := r.u32("status")
	if st != 0 && r.err == nil {
		return Attr{}, &StatusError{Status: st}
	}
	a := fattr3(r)
	return a, r.done("GETATTR reply")
}

func postOpAttr(r *xdrReader) {
	if r.bool("attributes follow") {
		fattr3(r)
	}
}

// fattr3 reads the 84-byte NFSv3 attribute structure.
func fattr3(r *xdrReader) Attr {
	var a Attr
	a.Type = FileType(r.u32("type"))
	a.Mode = r.u32("mode")
	r.u32("nlink")
	r.u32("uid")
	r.u32("gid")
	a.Size = r.u64("size")
	r.u64("used")
	r.u64("rdev")
	r.u64("fsid")
	a.FileID = r.u64("fileid")
	for i := 0; i < 3; i++ {
		r.u64("time")
	}
	return a
}
