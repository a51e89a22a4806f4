package nfs

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/attach"
	"github.com/xenha/xenha/storage/internal/run"
)

// Kind is the Volume.Kind this backend serves.
const Kind = "nfs"

// Volume parameters (storage.Volume.Params).
const (
	// ParamServer is the NFS server's host name or address.
	ParamServer = "server"
	// ParamExport is the exported directory, an absolute path.
	ParamExport = "export"
	// ParamPath is the disk image inside the export ("vm1.img", "pool/vm1.img").
	ParamPath = "path"
	// ParamOptions are extra mount options for HostMount ("nolock,timeo=300").
	ParamOptions = "options"
	// ParamPortmapPort, ParamMountPort and ParamNFSPort override the ports
	// the probe uses (rpcbind 111, and MOUNT/NFS as rpcbind says).
	ParamPortmapPort = "portmap_port"
	ParamMountPort   = "mount_port"
	ParamNFSPort     = "nfs_port"
)

// DefaultMountOptions are the options HostMount always passes; ParamOptions
// adds to them. "hard" keeps a VM's writes from failing silently when the
// server stalls; the health probe is what notices the stall.
const DefaultMountOptions = "vers=3,proto=tcp,hard,timeo=600,retrans=2"

// Mode says how a Backend makes a volume usable.
type Mode int

const (
	// NetworkDisk leaves NFS to QEMU (libnfs): Attach probes the export and
	// returns a network Source (libvirt <disk type='network' protocol='nfs'>).
	NetworkDisk Mode = iota
	// HostMount mounts the export on the host with mount(8) and returns the
	// image as a file Source.
	HostMount
)

func (m Mode) String() string {
	if m == HostMount {
		return "host-mount"
	}
	return "network-disk"
}

// Option configures a Backend.
type Option func(*Backend)

// WithMode selects NetworkDisk (the default) or HostMount.
func WithMode(m Mode) Option { return func(b *Backend) { b.mode = m } }

// WithRunner replaces the runner of mount and umount, for tests that replay
// recorded output.
func WithRunner(r run.Runner) Option { return func(b *Backend) { b.runner = r } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(b *Backend) { b.log = l } }

// WithMountRoot sets the directory under which HostMount mounts each volume
// (one directory per volume ID); default /run/xenha/nfs.
func WithMountRoot(dir string) Option { return func(b *Backend) { b.mountRoot = dir } }

// WithMountTable sets the file listing current mounts (default
// /proc/self/mounts), read to adopt a mount left by an earlier process.
func WithMountTable(file string) Option { return func(b *Backend) { b.mountTable = file } }

// WithStatTimeout bounds the stat through a mount that tells a live mount
// from a hung one (default 5s).
func WithStatTimeout(d time.Duration) Option { return func(b *Backend) { b.statTimeout = d } }

// WithMountTimeout bounds mount(8) and umount(8) (default
// DefaultMountTimeout); a hung umount is then forced (umount -f -l).
func WithMountTimeout(d time.Duration) Option { return func(b *Backend) { b.mountTimeout = d } }

// WithProbe sets options for the pure-Go NFSv3 probe (timeout, ports).
func WithProbe(opts ...ProbeOption) Option {
	return func(b *Backend) { b.probe = append(b.probe, opts...) }
}

// Backend attaches NFS-backed disk images on one host. It is safe for
// concurrent use; operations on one volume are serialized.
//
// NFS cannot refuse an old writer, so a Backend only refuses generations
// older than one it has seen itself; keeping the old host away is the
// cluster's fence-before-recover rule.
type Backend struct {
	host         string
	mode         Mode
	runner       run.Runner
	log          *slog.Logger
	mountRoot    string
	mountTable   string
	statTimeout  time.Duration
	mountTimeout time.Duration
	probe        []ProbeOption
	stat         func(string) error

	vols *attach.Table[mounted]
}

// mounted is what a HostMount attach leaves to undo: the mount's directory.
// It is empty in NetworkDisk mode.
type mounted struct{ dir string }

// New returns a Backend for host (its name in errors and logs).
func New(host string, opts ...Option) *Backend {
	b := &Backend{
		host:         host,
		runner:       &run.Exec{},
		log:          slog.New(slog.DiscardHandler),
		mountRoot:    "/run/xenha/nfs",
		mountTable:   "/proc/self/mounts",
		statTimeout:  5 * time.Second,
		mountTimeout: DefaultMountTimeout,
		stat:         statFile,
		vols:         attach.New[mounted]("a newer writer owns the volume, do not write"),
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// share is a parsed volume.
type share struct {
	server, export, disk string
	options              string
	probe                []ProbeOption
}

func parseVolume(vol storage.Volume) (share, error) {
	if vol.ID == "" || strings.ContainsAny(vol.ID, "/\x00") || vol.ID == "." || vol.ID == ".." {
		return share{}, fmt.Errorf("volume ID %q is empty or not usable as a directory name: %w", vol.ID, storage.ErrInvalidVolume)
	}
	if vol.Kind != "" && vol.Kind != Kind {
		return share{}, fmt.Errorf("volume kind %q is not %q: %w", vol.Kind, Kind, storage.ErrInvalidVolume)
	}
	s := share{server: vol.Params[ParamServer], export: vol.Params[ParamExport], disk: vol.Params[ParamPath], options: vol.Params[ParamOptions]}
	if s.server == "" || strings.ContainsAny(s.server, "/: ,\x00") && !strings.HasPrefix(s.server, "[") {
		return share{}, fmt.Errorf("parameter %q = %q is not a host name or address: %w", ParamServer, s.server, storage.ErrInvalidVolume)
	}
	if !strings.HasPrefix(s.export, "/") || strings.ContainsAny(s.export, "\x00\n ,") || path.Clean(s.export) != s.export {
		return share{}, fmt.Errorf("parameter %q = %q is not a clean absolute path: %w", ParamExport, s.export, storage.ErrInvalidVolume)
	}
	if s.disk == "" || strings.HasPrefix(s.disk, "/") || strings.ContainsAny(s.disk, "\x00\n") || path.Clean(s.disk) != s.disk || s.disk == ".." || strings.HasPrefix(s.disk, "../") {
		return share{}, fmt.Errorf("parameter %q = %q is not a clean path inside the export: %w", ParamPath, s.disk, storage.ErrInvalidVolume)
	}
	if strings.ContainsAny(s.options, " \x00\n") || strings.HasPrefix(s.options, "-") {
		return share{}, fmt.Errorf("parameter %q = %q is not a comma-separated option list: %w", ParamOptions, s.options, storage.ErrInvalidVolume)
	}
	for key, opt := range map[string]func(int) ProbeOption{ParamPortmapPort: WithPortmapPort, ParamMountPort: WithMountPort, ParamNFSPort: WithNFSPort} {
		v, ok := vol.Params[key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 65535 {
			return share{}, fmt.Errorf("parameter %q = %q is not a port: %w", key, v, storage.ErrInvalidVolume)
		}
		s.probe = append(s.probe, opt(n))
	}
	return s, nil
}

func (b *Backend) fail(vol storage.Volume, op string, err error) error {
	return &storage.Error{Volume: vol.ID, Host: b.host, Op: op, Err: err}
}

func (b *Backend) probeShare(ctx context.Context, s share) error {
	opts := append(append([]ProbeOption{}, b.probe...), s.probe...)
	a, err := Probe(ctx, s.server, s.export, s.disk, opts...)
	if err != nil {
		return err
	}
	if a.Type != TypeRegular {
		return fmt.Errorf("nfs: %s:%s/%s is not a regular file (type %d); point %q at the disk image: %w", s.server, s.export, s.disk, a.Type, ParamPath, storage.ErrInvalidVolume)
	}
	return nil
}

// Attach makes vol usable on this host at vol.Generation. A generation lower
// than one this host has seen is storage.ErrStaleGeneration; attaching again
// at the attached generation returns the same source.
func (b *Backend) Attach(ctx context.Context, vol storage.Volume) (storage.Source, error) {
	if err := ctx.Err(); err != nil {
		return storage.Source{}, b.fail(vol, "attach", err)
	}
	s, err := parseVolume(vol)
	if err != nil {
		return storage.Source{}, b.fail(vol, "attach", err)
	}
	unlock := b.vols.Lock(vol.ID)
	defer unlock()
	if err := b.vols.Check(vol.ID, vol.Generation); err != nil {
		return storage.Source{}, b.fail(vol, "attach", err)
	}
	if a, ok := b.vols.Lookup(vol.ID); ok && a.Generation == vol.Generation {
		return a.Source, nil
	}
	var src storage.Source
	var m mounted
	if b.mode == HostMount {
		m.dir, src, err = b.attachMount(ctx, vol, s)
		if err != nil {
			return storage.Source{}, b.fail(vol, "mount", err)
		}
	} else {
		if err := b.probeShare(ctx, s); err != nil {
			return storage.Source{}, b.fail(vol, "probe", err)
		}
		src = storage.Source{
			Type:     storage.SourceNetwork,
			Protocol: "nfs",
			Name:     path.Join(s.export, s.disk),
			// QEMU's libnfs finds MOUNT and NFS through rpcbind on 111; a
			// port here would be ignored, so none is given.
			Hosts: []storage.HostPort{{Host: s.server}},
		}
	}
	b.vols.Record(vol.ID, attach.Attachment[mounted]{Generation: vol.Generation, Source: src, Detail: m})
	b.log.LogAttrs(ctx, slog.LevelInfo, "nfs volume attached", slog.String("volume", vol.ID),
		slog.Uint64("generation", vol.Generation), slog.String("mode", b.mode.String()), slog.String("source", src.String()))
	return src, nil
}

// Detach releases vol on this host (unmounting in HostMount mode).
// Detaching a detached volume is not an error.
func (b *Backend) Detach(ctx context.Context, vol storage.Volume) error {
	if err := ctx.Err(); err != nil {
		return b.fail(vol, "detach", err)
	}
	unlock := b.vols.Lock(vol.ID)
	defer unlock()
	a, ok := b.vols.Lookup(vol.ID)
	if !ok {
		return nil
	}
	if b.mode == HostMount && a.Detail.dir != "" {
		if err := b.unmount(ctx, a.Detail.dir); err != nil {
			return b.fail(vol, "umount", err)
		}
	}
	b.vols.Forget(vol.ID)
	return nil
}

// Health probes the export over NFSv3 in pure Go. In HostMount mode, for an
// attached volume, it also stats the image through the mount, bounded, so
// that a hung mount is reported (storage.ErrUnreachable) instead of hanging
// the caller.
func (b *Backend) Health(ctx context.Context, vol storage.Volume) error {
	if err := ctx.Err(); err != nil {
		return b.fail(vol, "probe", err)
	}
	s, err := parseVolume(vol)
	if err != nil {
		return b.fail(vol, "probe", err)
	}
	if b.mode == HostMount {
		// Not under the volume's lock: Health must not wait behind a hung
		// mount, it is what reports one.
		if a, ok := b.vols.Lookup(vol.ID); ok && a.Source.Path != "" {
			if err := b.boundedStat(ctx, a.Source.Path); err != nil {
				return b.fail(vol, "probe", err)
			}
		}
	}
	if err := b.probeShare(ctx, s); err != nil {
		return b.fail(vol, "probe", err)
	}
	return nil
}
