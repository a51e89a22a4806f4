package drbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/floor"
	"github.com/xenha/xenha/storage/internal/run"
)

// Kind is the storage.Volume.Kind of DRBD volumes.
const Kind = "drbd"

// Option configures a Backend.
type Option func(*Backend)

// WithHostName names this host in errors (default: os.Hostname).
func WithHostName(name string) Option { return func(b *Backend) { b.host = name } }

// WithConfig makes drbdadm read this configuration file (drbdadm -c) instead
// of /etc/drbd.conf.
func WithConfig(path string) Option { return func(b *Backend) { b.config = path } }

// WithDrbdsetup sets the drbdsetup program: run directly for status and
// events2, and passed to drbdadm (--drbdsetup=PATH).
func WithDrbdsetup(path string) Option { return func(b *Backend) { b.drbdsetup = path } }

// WithDrbdadm sets the drbdadm program (default "drbdadm" on PATH).
func WithDrbdadm(path string) Option { return func(b *Backend) { b.drbdadm = path } }

// WithRunner replaces how commands run (default: on this host).
func WithRunner(r run.Runner) Option { return func(b *Backend) { b.runner = r } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(b *Backend) { b.log = l } }

// Backend promotes and demotes DRBD resources on this host. It is safe for
// concurrent use.
type Backend struct {
	host      string
	config    string
	drbdadm   string
	drbdsetup string
	runner    run.Runner
	log       *slog.Logger

	floor  *floor.Floor // per resource: lock, highest generation promoted with
	mu     sync.Mutex
	events *State // from Watch: split brains the status cannot show
}

var (
	_ storage.Backend  = (*Backend)(nil)
	_ storage.Promoter = (*Backend)(nil)
)

// New returns a Backend.
func New(opts ...Option) *Backend {
	b := &Backend{drbdadm: "drbdadm", drbdsetup: "drbdsetup", runner: &run.Exec{},
		log: slog.New(slog.DiscardHandler), floor: floor.New("promoted", "the cluster moved the volume on"), events: NewState()}
	for _, o := range opts {
		o(b)
	}
	if b.host == "" {
		b.host, _ = os.Hostname()
	}
	return b
}

type params struct {
	resource string
	volume   int
	fenced   map[string]bool
}

// resourceRE is what drbdadm accepts as a resource name, minus oddities.
var resourceRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$`)

func parse(vol storage.Volume) (params, error) {
	bad := func(format string, args ...any) (params, error) {
		return params{}, fmt.Errorf("drbd volume %q: %s: %w", vol.ID, fmt.Sprintf(format, args...), storage.ErrInvalidVolume)
	}
	if vol.ID == "" {
		return bad("no volume ID")
	}
	if vol.Kind != "" && vol.Kind != Kind {
		return bad("kind %q is not %q", vol.Kind, Kind)
	}
	p := params{resource: vol.Params["resource"], fenced: map[string]bool{}}
	if !resourceRE.MatchString(p.resource) {
		return bad("parameter resource=%q is not a DRBD resource name", p.resource)
	}
	if s, ok := vol.Params["volume"]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 65535 {
			return bad("parameter volume=%q is not a volume number", s)
		}
		p.volume = n
	}
	for _, f := range strings.Split(vol.Params["fenced"], ",") {
		if f = strings.TrimSpace(f); f != "" {
			p.fenced[f] = true
		}
	}
	return p, nil
}

func (b *Backend) fail(vol storage.Volume, op string, err error) error {
	return &storage.Error{Volume: vol.ID, Host: b.host, Op: op, Err: err}
}

// adm runs drbdadm ACTION RESOURCE with the configured file and drbdsetup.
func (b *Backend) adm(ctx context.Context, action, res string) (run.Result, error) {
	var args []string
	if b.config != "" {
		args = append(args, "-c", b.config)
	}
	if b.drbdsetup != "drbdsetup" {
		args = append(args, "--drbdsetup="+b.drbdsetup)
	}
	return b.runner.Run(ctx, run.Command(b.drbdadm, append(args, action, res)...))
}

// classify maps drbdadm's and drbdsetup's messages to the errors callers
// branch on. Only the messages matter: drbdadm adds noise ("modinfo: not
// found") on hosts without the module.
func classify(err error) error {
	var xe *run.ExitError
	if !errors.As(err, &xe) {
		return err
	}
	msg := xe.Stderr
	switch {
	case strings.Contains(msg, "No such resource") || strings.Contains(msg, "not defined in your config"):
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	case strings.Contains(msg, "Multiple primaries not allowed"):
		return fmt.Errorf("a peer is Primary: %w: %w", storage.ErrInUse, err)
	case strings.Contains(msg, "held open"):
		return fmt.Errorf("the device is open (is the VM still running?): %w: %w", storage.ErrInUse, err)
	case strings.Contains(msg, "Need access to UpToDate data"):
		return fmt.Errorf("%w: %w", ErrNoGoodData, err)
	}
	return err
}

// Status returns this node's view of a resource (drbdsetup status --json),
// with split brains Watch has seen marked on their connections.
func (b *Backend) Status(ctx context.Context, resource string) (Resource, error) {
	res, err := b.runner.Run(ctx, run.Command(b.drbdsetup, "status", resource, "--json"))
	if err != nil {
		return Resource{}, classify(err)
	}
	rs, err := ParseStatusJSON(res.Stdout)
	if err != nil {
		return Resource{}, err
	}
	for _, r := range rs {
		if r.Name != resource {
			continue
		}
		b.mu.Lock()
		seen, ok := b.events.Resource(resource)
		b.mu.Unlock()
		if ok {
			for i, c := range r.Connections {
				for _, sc := range seen.Connections {
					if sc.SplitBrain && (sc.PeerNodeID == c.PeerNodeID || sc.Name == c.Name) {
						r.Connections[i].SplitBrain = true
					}
				}
			}
		}
		return r, nil
	}
	return Resource{}, fmt.Errorf("drbdsetup status does not list %s: %w", resource, storage.ErrNotFound)
}

// Promote implements storage.Promoter: it makes this host Primary for the
// volume's resource if the promotion rules allow, and checks that it is.
func (b *Backend) Promote(ctx context.Context, vol storage.Volume) error {
	_, err := b.promote(ctx, vol, "promote")
	return err
}

func (b *Backend) promote(ctx context.Context, vol storage.Volume, op string) (Resource, error) {
	p, err := parse(vol)
	if err != nil {
		return Resource{}, b.fail(vol, op, err)
	}
	if err := ctx.Err(); err != nil {
		return Resource{}, b.fail(vol, op, err)
	}
	defer b.floor.Lock(p.resource)()
	if err := b.floor.Check(p.resource, vol.Generation); err != nil {
		return Resource{}, b.fail(vol, op, err)
	}
	r, err := b.Status(ctx, p.resource)
	if err != nil {
		return Resource{}, b.fail(vol, "status", err)
	}
	if err := splitBrain(r); err != nil {
		return Resource{}, b.fail(vol, op, err)
	}
	if r.Role != "Primary" {
		if err := checkPromote(r, p.volume, p.fenced); err != nil {
			return Resource{}, b.fail(vol, op, err)
		}
		if _, err := b.adm(ctx, "primary", p.resource); err != nil {
			return Resource{}, b.fail(vol, op, fmt.Errorf("drbdadm primary %s: %w", p.resource, classify(err)))
		}
		if r, err = b.Status(ctx, p.resource); err != nil {
			return Resource{}, b.fail(vol, "status", err)
		}
		if r.Role != "Primary" {
			return Resource{}, b.fail(vol, op, fmt.Errorf("drbdadm primary %s succeeded but the role is %s; check 'drbdadm status %s'",
				p.resource, orUnknown(r.Role), p.resource))
		}
		b.log.InfoContext(ctx, "drbd promoted", "resource", p.resource, "generation", vol.Generation)
	}
	b.floor.Raise(p.resource, vol.Generation)
	return r, nil
}

// Demote implements storage.Promoter: it makes this host Secondary. Demoting
// a Secondary, or a resource that is not configured here, is not an error.
func (b *Backend) Demote(ctx context.Context, vol storage.Volume) error {
	return b.demote(ctx, vol, "demote")
}

func (b *Backend) demote(ctx context.Context, vol storage.Volume, op string) error {
	p, err := parse(vol)
	if err != nil {
		return b.fail(vol, op, err)
	}
	if err := ctx.Err(); err != nil {
		return b.fail(vol, op, err)
	}
	defer b.floor.Lock(p.resource)()
	r, err := b.Status(ctx, p.resource)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return b.fail(vol, "status", err)
	}
	if r.Role != "Primary" {
		return nil
	}
	if _, err := b.adm(ctx, "secondary", p.resource); err != nil {
		return b.fail(vol, op, fmt.Errorf("drbdadm secondary %s: %w", p.resource, classify(err)))
	}
	b.log.InfoContext(ctx, "drbd demoted", "resource", p.resource)
	return nil
}

// Attach implements storage.Backend: Promote, then the volume's /dev/drbdN.
func (b *Backend) Attach(ctx context.Context, vol storage.Volume) (storage.Source, error) {
	r, err := b.promote(ctx, vol, "attach")
	if err != nil {
		return storage.Source{}, err
	}
	p, _ := parse(vol)
	if d := r.Device(p.volume); d != nil && d.Minor >= 0 {
		return storage.Source{Type: storage.SourceBlock, Path: fmt.Sprintf("/dev/drbd%d", d.Minor)}, nil
	}
	// Status without minors (older drbdsetup): ask drbdadm for the device.
	res, err := b.adm(ctx, "sh-dev", p.resource)
	if err != nil {
		return storage.Source{}, b.fail(vol, "attach", fmt.Errorf("drbdadm sh-dev %s: %w", p.resource, classify(err)))
	}
	devs := strings.Fields(string(res.Stdout))
	if p.volume >= len(devs) || !strings.HasPrefix(devs[p.volume], "/dev/") {
		return storage.Source{}, b.fail(vol, "attach", fmt.Errorf("drbdadm sh-dev %s printed %q, no device for volume %d", p.resource, res.Stdout, p.volume))
	}
	return storage.Source{Type: storage.SourceBlock, Path: devs[p.volume]}, nil
}

// Detach implements storage.Backend: Demote.
func (b *Backend) Detach(ctx context.Context, vol storage.Volume) error {
	return b.demote(ctx, vol, "detach")
}

// Health implements storage.Backend: the resource exists, shows no split
// brain, has quorum, and up-to-date data is reachable (here or on a connected
// peer).
func (b *Backend) Health(ctx context.Context, vol storage.Volume) error {
	p, err := parse(vol)
	if err != nil {
		return b.fail(vol, "health", err)
	}
	if err := ctx.Err(); err != nil {
		return b.fail(vol, "health", err)
	}
	r, err := b.Status(ctx, p.resource)
	if err != nil {
		return b.fail(vol, "status", err)
	}
	if err := splitBrain(r); err != nil {
		return b.fail(vol, "health", err)
	}
	d := r.Device(p.volume)
	if d == nil {
		return b.fail(vol, "health", fmt.Errorf("resource %s has no volume %d: %w", p.resource, p.volume, storage.ErrNotFound))
	}
	if d.Quorum != nil && !*d.Quorum {
		return b.fail(vol, "health", fmt.Errorf("resource %s volume %d: %w", p.resource, p.volume, ErrNoQuorum))
	}
	if d.Disk == "UpToDate" {
		return nil
	}
	for _, c := range r.Connections {
		if pd := c.peerDevice(p.volume); c.State == "Connected" && pd != nil && pd.PeerDisk == "UpToDate" {
			return nil
		}
	}
	return b.fail(vol, "health", fmt.Errorf("resource %s volume %d is %s here and no connected peer is UpToDate: %w",
		p.resource, p.volume, orUnknown(d.Disk), ErrNoGoodData))
}

// Watch follows `drbdsetup events2 RESOURCE` until ctx ends or the stream
// does, remembering split brains so that Promote and Health report
// storage.ErrSplitBrain. fn, if not nil, sees every event. Run it for each
// resource this host may promote; a split brain happens while nobody asks.
func (b *Backend) Watch(ctx context.Context, resource string, fn func(Event)) error {
	if !resourceRE.MatchString(resource) {
		return fmt.Errorf("watch %q: %w", resource, storage.ErrInvalidVolume)
	}
	cmd := exec.CommandContext(ctx, b.drbdsetup, "events2", resource)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("drbdsetup events2 %s: %w", resource, err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		ev, err := ParseEvent(sc.Text())
		if err != nil {
			b.log.WarnContext(ctx, "drbd events2: skipping a line", "resource", resource, "err", err)
			continue
		}
		b.mu.Lock()
		b.events.Apply(ev)
		b.mu.Unlock()
		if ev.Verb == "call" && splitBrainHelpers[ev.Get("helper")] {
			b.log.ErrorContext(ctx, "drbd split brain", "resource", resource, "peer", ev.Get("conn-name"))
		}
		if fn != nil {
			fn(ev)
		}
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("drbdsetup events2 %s: %w: %s", resource, err, strings.TrimSpace(stderr.String()))
	}
	return sc.Err()
}
