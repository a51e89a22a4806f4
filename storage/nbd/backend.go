package nbd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/attach"
	"github.com/xenha/xenha/storage/internal/run"
)

// Kind is the storage.Volume.Kind of NBD volumes.
const Kind = "nbd"

// DefaultPort is the IANA port of NBD.
const DefaultPort = 10809

// Option configures a Backend.
type Option func(*Backend)

// WithHostName names the host this backend runs on, for error messages
// (default: os.Hostname).
func WithHostName(name string) Option { return func(b *Backend) { b.host = name } }

// HostMode makes Attach connect an /dev/nbdN device with nbd-client (the
// volume's "device" parameter) instead of returning a network disk.
func HostMode() Option { return func(b *Backend) { b.hostMode = true } }

// WithRunner replaces how host mode runs nbd-client (default: on this host).
func WithRunner(r run.Runner) Option { return func(b *Backend) { b.runner = r } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(b *Backend) { b.log = l } }

// WithProbeTimeout bounds each protocol probe when the caller's context has
// no earlier deadline (default 5s).
func WithProbeTimeout(d time.Duration) Option { return func(b *Backend) { b.probeTimeout = d } }

// Backend attaches NBD volumes on one host. It is safe for concurrent use.
type Backend struct {
	host         string
	hostMode     bool
	runner       run.Runner
	log          *slog.Logger
	probeTimeout time.Duration

	// vols locks each volume across tool runs and probes, and keeps what
	// is attached with which parameters, and the highest generation.
	vols *attach.Table[params]
}

var _ storage.Backend = (*Backend)(nil)

// New returns a Backend in network-disk mode unless HostMode is given.
func New(opts ...Option) *Backend {
	b := &Backend{
		runner:       &run.Exec{},
		log:          slog.New(slog.DiscardHandler),
		probeTimeout: 5 * time.Second,
		vols:         attach.New[params]("the cluster moved the volume on, so this host must not write"),
	}
	for _, o := range opts {
		o(b)
	}
	if b.host == "" {
		b.host, _ = os.Hostname()
	}
	return b
}

// params are a volume's validated parameters.
type params struct {
	server   string
	port     int
	export   string
	device   string
	readOnly bool
}

func (p params) addr() string { return net.JoinHostPort(p.server, strconv.Itoa(p.port)) }

var deviceRE = regexp.MustCompile(`^/dev/nbd[0-9]+$`)

func (b *Backend) parse(vol storage.Volume) (params, error) {
	bad := func(format string, args ...any) (params, error) {
		return params{}, fmt.Errorf("nbd volume %q: %s: %w", vol.ID, fmt.Sprintf(format, args...), storage.ErrInvalidVolume)
	}
	if vol.ID == "" {
		return bad("no volume ID")
	}
	if vol.Kind != "" && vol.Kind != Kind {
		return bad("kind %q is not %q", vol.Kind, Kind)
	}
	p := params{server: vol.Params["server"], export: vol.Params["export"], device: vol.Params["device"], port: DefaultPort}
	if p.server == "" || strings.ContainsAny(p.server, " /\t\n") {
		return bad("parameter server=%q must be a host name or address", p.server)
	}
	if p.export == "" || len(p.export) > 4096 || strings.ContainsAny(p.export, "\x00\n") {
		return bad("parameter export=%q must name an export (1-4096 bytes)", p.export)
	}
	if s, ok := vol.Params["port"]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return bad("parameter port=%q is not a TCP port", s)
		}
		p.port = n
	}
	if s, ok := vol.Params["readonly"]; ok {
		ro, err := strconv.ParseBool(s)
		if err != nil {
			return bad("parameter readonly=%q is not true or false", s)
		}
		p.readOnly = ro
	}
	if b.hostMode && !deviceRE.MatchString(p.device) {
		return bad("host mode needs parameter device=/dev/nbdN (got %q)", p.device)
	}
	return p, nil
}

func (b *Backend) fail(vol storage.Volume, op string, err error) error {
	return &storage.Error{Volume: vol.ID, Host: b.host, Op: op, Err: err}
}

// probe asks the server about the export, bounded by the probe timeout.
func (b *Backend) probe(ctx context.Context, p params) (Export, error) {
	ctx, cancel := context.WithTimeout(ctx, b.probeTimeout)
	defer cancel()
	ex, err := ExportInfo(ctx, p.addr(), p.export)
	if errors.Is(err, storage.ErrNotFound) {
		return ex, fmt.Errorf("export %q: %w; check the name against the server's export list", p.export, err)
	}
	return ex, err
}

// Attach implements storage.Backend. It refuses a generation lower than the
// highest it has attached the volume with, checks the export exists, and in
// host mode connects the device.
func (b *Backend) Attach(ctx context.Context, vol storage.Volume) (storage.Source, error) {
	p, err := b.parse(vol)
	if err != nil {
		return storage.Source{}, b.fail(vol, "attach", err)
	}
	if err := ctx.Err(); err != nil {
		return storage.Source{}, b.fail(vol, "attach", err)
	}
	defer b.vols.Lock(vol.ID)()
	if err := b.vols.Check(vol.ID, vol.Generation); err != nil {
		return storage.Source{}, b.fail(vol, "attach", err)
	}
	// The same export and device serve a newer generation as they are:
	// the generation is a token in xenha's log, not on the server.
	if a, ok := b.vols.Lookup(vol.ID); ok && a.Detail == p {
		a.Generation = vol.Generation
		b.vols.Record(vol.ID, a)
		return a.Source, nil
	}
	ex, err := b.probe(ctx, p)
	if err != nil {
		return storage.Source{}, b.fail(vol, "probe", err)
	}
	ro := p.readOnly || ex.ReadOnly()
	var src storage.Source
	if b.hostMode {
		if err := b.connect(ctx, vol, p, ro); err != nil {
			return storage.Source{}, err
		}
		src = storage.Source{Type: storage.SourceBlock, Path: p.device, ReadOnly: ro}
	} else {
		src = storage.Source{Type: storage.SourceNetwork, Protocol: "nbd", Name: p.export,
			Hosts: []storage.HostPort{{Host: p.server, Port: p.port}}, ReadOnly: ro}
	}
	b.vols.Record(vol.ID, attach.Attachment[params]{Generation: vol.Generation, Source: src, Detail: p})
	b.log.InfoContext(ctx, "nbd attached", "volume", vol.ID, "generation", vol.Generation, "source", src.String(),
		"size", ex.Size, "read_only", ro)
	return src, nil
}

// Detach implements storage.Backend: in host mode it disconnects the device if
// it is connected; in network mode it only forgets the attachment (QEMU closes
// the connection when the domain stops).
func (b *Backend) Detach(ctx context.Context, vol storage.Volume) error {
	p, err := b.parse(vol)
	if err != nil {
		return b.fail(vol, "detach", err)
	}
	if err := ctx.Err(); err != nil {
		return b.fail(vol, "detach", err)
	}
	defer b.vols.Lock(vol.ID)()
	if b.hostMode {
		if err := b.disconnect(ctx, vol, p); err != nil {
			return err
		}
	}
	b.vols.Forget(vol.ID)
	return nil
}

// Health implements storage.Backend: one protocol probe of the export.
func (b *Backend) Health(ctx context.Context, vol storage.Volume) error {
	p, err := b.parse(vol)
	if err != nil {
		return b.fail(vol, "health", err)
	}
	if err := ctx.Err(); err != nil {
		return b.fail(vol, "health", err)
	}
	if _, err := b.probe(ctx, p); err != nil {
		return b.fail(vol, "probe", err)
	}
	return nil
}

// URI renders an NBD network source as the nbd:// URI that QEMU and qemu-img
// open (the first host only; NBD has no multipath).
func URI(src storage.Source) (string, error) {
	if src.Type != storage.SourceNetwork || src.Protocol != "nbd" || len(src.Hosts) == 0 || src.Name == "" {
		return "", fmt.Errorf("source %v is not an NBD network disk: %w", src, storage.ErrInvalidVolume)
	}
	port := src.Hosts[0].Port
	if port == 0 {
		port = DefaultPort
	}
	u := url.URL{Scheme: "nbd", Host: net.JoinHostPort(src.Hosts[0].Host, strconv.Itoa(port)), Path: "/" + src.Name}
	return u.String(), nil
}
