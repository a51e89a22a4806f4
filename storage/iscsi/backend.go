package iscsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/attach"
	"github.com/xenha/xenha/storage/internal/run"
)

// Kind is the Volume.Kind this backend serves.
const Kind = "iscsi"

// Volume parameters (storage.Volume.Params).
const (
	// ParamPortal is the target's portal, "host" or "host:port" (3260).
	ParamPortal = "portal"
	// ParamIQN is the target name.
	ParamIQN = "iqn"
	// ParamLUN is the logical unit number, 0 to 16383.
	ParamLUN = "lun"
)

// Mode says how a Backend makes a volume usable.
type Mode int

const (
	// NetworkDisk leaves the login to QEMU: Attach probes the target and
	// returns a network Source (libvirt <disk type='network'
	// protocol='iscsi'>). Nothing is logged in on the host.
	NetworkDisk Mode = iota
	// HostLogin logs the host in with iscsiadm, fences older writers with a
	// SCSI-3 persistent reservation keyed by the volume generation
	// (sg_persist), and returns the block device.
	HostLogin
)

func (m Mode) String() string {
	if m == HostLogin {
		return "host-login"
	}
	return "network-disk"
}

// Option configures a Backend.
type Option func(*Backend)

// WithMode selects NetworkDisk (the default) or HostLogin.
func WithMode(m Mode) Option { return func(b *Backend) { b.mode = m } }

// WithRunner replaces the runner of host tools (iscsiadm, sg_persist), for
// tests that replay recorded output. The default runs them on this host.
func WithRunner(r run.Runner) Option { return func(b *Backend) { b.runner = r } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(b *Backend) { b.log = l } }

// WithProbe sets options for the pure-Go probe that Health and NetworkDisk
// attaches use (initiator name, timeout).
func WithProbe(opts ...ProbeOption) Option {
	return func(b *Backend) { b.probe = append(b.probe, opts...) }
}

// WithDeviceWait bounds how long a HostLogin attach waits for the kernel to
// create the LUN's disk after login (default 10s).
func WithDeviceWait(d time.Duration) Option { return func(b *Backend) { b.deviceWait = d } }

// Backend attaches iSCSI volumes on one host. It is safe for concurrent use;
// operations on one volume are serialized.
type Backend struct {
	host       string
	mode       Mode
	runner     run.Runner
	log        *slog.Logger
	probe      []ProbeOption
	deviceWait time.Duration

	vols *attach.Table[struct{}]
}

// New returns a Backend for host (its name in errors and logs).
func New(host string, opts ...Option) *Backend {
	b := &Backend{
		host:       host,
		runner:     &run.Exec{},
		log:        slog.New(slog.DiscardHandler),
		deviceWait: 10 * time.Second,
		vols:       attach.New[struct{}]("a newer writer owns the volume, do not write"),
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// target is a parsed volume.
type target struct {
	portal string // host:port
	iqn    string
	lun    int
}

func parseVolume(vol storage.Volume) (target, error) {
	if vol.ID == "" {
		return target{}, fmt.Errorf("volume has no ID: %w", storage.ErrInvalidVolume)
	}
	if vol.Kind != "" && vol.Kind != Kind {
		return target{}, fmt.Errorf("volume kind %q is not %q: %w", vol.Kind, Kind, storage.ErrInvalidVolume)
	}
	var t target
	var err error
	if t.portal, err = portalAddr(vol.Params[ParamPortal]); err != nil {
		return target{}, fmt.Errorf("parameter %q: %w", ParamPortal, err)
	}
	t.iqn = vol.Params[ParamIQN]
	if !validIQN(t.iqn) {
		return target{}, fmt.Errorf("parameter %q = %q is not an iqn./eui./naa. name: %w", ParamIQN, t.iqn, storage.ErrInvalidVolume)
	}
	lun, ok := vol.Params[ParamLUN]
	if !ok {
		return target{}, fmt.Errorf("parameter %q missing (LUN 0 is often the target's controller, so there is no default): %w", ParamLUN, storage.ErrInvalidVolume)
	}
	t.lun, err = strconv.Atoi(lun)
	if err != nil || t.lun < 0 || t.lun > 16383 {
		return target{}, fmt.Errorf("parameter %q = %q is not a LUN 0..16383: %w", ParamLUN, lun, storage.ErrInvalidVolume)
	}
	return t, nil
}

// validIQN accepts the three iSCSI name formats and refuses anything that
// could be mistaken for a command-line switch or break a URL.
func validIQN(s string) bool {
	if len(s) < 5 || len(s) > 223 {
		return false
	}
	if !strings.HasPrefix(s, "iqn.") && !strings.HasPrefix(s, "eui.") && !strings.HasPrefix(s, "naa.") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:", r)) {
			return false
		}
	}
	return true
}

func (b *Backend) fail(vol storage.Volume, op string, err error) error {
	return &storage.Error{Volume: vol.ID, Host: b.host, Op: op, Err: err}
}

// networkSource is the libvirt network disk for t.
func networkSource(t target) storage.Source {
	host, port, _ := net.SplitHostPort(t.portal)
	p, _ := strconv.Atoi(port)
	return storage.Source{
		Type:     storage.SourceNetwork,
		Protocol: "iscsi",
		Name:     t.iqn + "/" + strconv.Itoa(t.lun),
		Hosts:    []storage.HostPort{{Host: host, Port: p}},
	}
}

// Attach makes vol usable on this host at vol.Generation. A generation lower
// than one this host has seen is storage.ErrStaleGeneration; attaching again
// at the attached generation returns the same source. In HostLogin mode the
// storage itself also refuses older writers (see the package documentation).
func (b *Backend) Attach(ctx context.Context, vol storage.Volume) (storage.Source, error) {
	if err := ctx.Err(); err != nil {
		return storage.Source{}, b.fail(vol, "attach", err)
	}
	t, err := parseVolume(vol)
	if err != nil {
		return storage.Source{}, b.fail(vol, "attach", err)
	}
	unlock := b.vols.Lock(vol.ID)
	defer unlock()
	if err := b.vols.Check(vol.ID, vol.Generation); err != nil {
		return storage.Source{}, b.fail(vol, "attach", err)
	}
	if a, ok := b.vols.Lookup(vol.ID); ok && a.Generation == vol.Generation {
		if b.mode == HostLogin {
			// The storage may have moved on without this host knowing (a
			// newer generation preempted it): confirm before handing the
			// disk out again.
			if err := b.confirmHeld(ctx, a.Source.Path, vol.Generation); err != nil {
				return storage.Source{}, b.fail(vol, "reserve", err)
			}
		}
		return a.Source, nil
	}
	var src storage.Source
	switch b.mode {
	case HostLogin:
		src, err = b.attachHost(ctx, vol, t)
	default:
		src, err = b.attachNetwork(ctx, t)
	}
	if err != nil {
		op := "attach"
		var oe *opError
		if errors.As(err, &oe) {
			op = oe.op
		}
		return storage.Source{}, b.fail(vol, op, err)
	}
	b.vols.Record(vol.ID, attach.Attachment[struct{}]{Generation: vol.Generation, Source: src})
	b.log.LogAttrs(ctx, slog.LevelInfo, "iscsi volume attached", slog.String("volume", vol.ID),
		slog.Uint64("generation", vol.Generation), slog.String("mode", b.mode.String()), slog.String("source", src.String()))
	return src, nil
}

// attachNetwork proves QEMU will find the disk (the portal answers, the
// target admits us, the LUN serves commands) before handing out the source:
// a VM started on a dead path fails later and less clearly.
func (b *Backend) attachNetwork(ctx context.Context, t target) (storage.Source, error) {
	if _, err := ReadCapacity(ctx, t.portal, t.iqn, t.lun, b.probe...); err != nil {
		return storage.Source{}, &opError{op: "probe", err: err}
	}
	return networkSource(t), nil
}

// opError names the step of an attach that failed, for storage.Error.Op.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

// Detach releases vol on this host: in HostLogin mode it drops this host's
// reservation key and logs out. Detaching a detached volume is not an error,
// and neither is detaching after another host preempted this one.
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
	if b.mode == HostLogin {
		t, err := parseVolume(vol)
		if err != nil {
			return b.fail(vol, "detach", err)
		}
		if err := b.detachHost(ctx, t, a.Source.Path, a.Generation); err != nil {
			return b.fail(vol, "detach", err)
		}
	}
	b.vols.Forget(vol.ID)
	return nil
}

// Health logs in to the target with the pure-Go probe and reads the LUN's
// capacity. It needs no initiator on the host and attaches nothing. In
// HostLogin mode, for a volume this host has attached, it also checks that
// the host's key still holds the reservation: a host that a newer
// generation preempted learns it here (storage.ErrStaleGeneration) and
// must stop writing.
func (b *Backend) Health(ctx context.Context, vol storage.Volume) error {
	if err := ctx.Err(); err != nil {
		return b.fail(vol, "probe", err)
	}
	t, err := parseVolume(vol)
	if err != nil {
		return b.fail(vol, "probe", err)
	}
	if _, err := ReadCapacity(ctx, t.portal, t.iqn, t.lun, b.probe...); err != nil {
		return b.fail(vol, "probe", err)
	}
	if b.mode == HostLogin {
		// Not under the volume's lock: an attach hung on the target must
		// not hold up the probe that reports it.
		if a, ok := b.vols.Lookup(vol.ID); ok && a.Source.Path != "" {
			if err := b.confirmHeld(ctx, a.Source.Path, a.Generation); err != nil {
				return b.fail(vol, "reservation", err)
			}
		}
	}
	return nil
}
