package hostd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/xenha/xenha/examples/internal/member"
	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/watchdog"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
	"github.com/xenha/xenha/netguard/nft"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/drbd"
	"github.com/xenha/xenha/storage/iscsi"
	"github.com/xenha/xenha/storage/nbd"
	"github.com/xenha/xenha/storage/nfs"
	"github.com/xenha/xenha/xenctl/libvirt"
)

// Run is the daemon's life: start the member, enter the pool, report events
// until ctx ends, close. ready, if set, is called once the member is in the
// pool, with the member (to serve an API from, say).
func Run(ctx context.Context, f *File, log *slog.Logger, ready func(*ha.Cluster)) error {
	return run(ctx, f, log, ready)
}

// run is the daemon's life: start the member, enter the pool, report
// events until ctx ends, close. ready, if set, is called once the member is
// in the pool.
func run(ctx context.Context, f *File, log *slog.Logger, ready func(*ha.Cluster)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rn := newRenewals()
	cfg, cleanup, err := build(ctx, f, log, rn)
	if err != nil {
		return err
	}
	defer cleanup()
	dog, _ := cfg.Watchdog.(*watchdog.Keeper)
	if dog != nil {
		defer pet(dog, log)()
	}
	c, err := ha.New(ctx, cfg)
	if err != nil {
		return err
	}
	stopped := false // ctx ended: the daemon was asked to stop
	defer func() {
		vms := poolVMs(c)
		closed := member.Close(c, log) == nil
		if dog != nil {
			settleWatchdog(dog, stopped && closed, vms, cfg.Hypervisor, log)
		}
	}()
	events := c.Subscribe(ctx)
	go rn.follow(ctx, c)
	switch {
	case !c.Fresh():
		log.Info("resuming from the data directory", "dir", f.DataDir)
	case f.Bootstrap:
		if err := c.Bootstrap(ctx); err != nil {
			return err
		}
		log.Info("formed a new pool", "cluster", f.ClusterID)
	case len(f.Join) > 0:
		if err := c.Join(ctx, f.Join...); err != nil {
			return err
		}
		log.Info("joined the pool", "via", f.Join)
	default:
		return fmt.Errorf("daemon: host %s has no state in %s: set \"bootstrap\": true on the first host, or \"join\" to existing members", f.ID, f.DataDir)
	}
	if ready != nil {
		ready(c)
	}
	member.LogEvents(ctx, log, events)
	stopped = ctx.Err() != nil
	return nil
}

// build turns the file into an ha.Config with this host's plug-ins. cleanup
// releases what it opened.
func build(ctx context.Context, f *File, log *slog.Logger, rn *renewals) (ha.Config, func(), error) {
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (ha.Config, func(), error) {
		cleanup()
		return ha.Config{}, func() {}, err
	}
	cfg, err := profile(f.Profile)
	if err != nil {
		return fail(err)
	}
	cfg.ID, cfg.ClusterID, cfg.DataDir = f.ID, f.ClusterID, f.DataDir
	cfg.BindAddr, cfg.AdvertiseAddr = f.Bind, f.Advertise
	cfg.Logger = log
	if cfg.Role, err = parseRole(f.Role); err != nil {
		return fail(err)
	}
	applyTimings(&cfg, f.Timings)
	if err := f.watchdog(&cfg, log); err != nil {
		return fail(err)
	}
	if cfg.JoinToken, err = member.ReadJoinToken(f.JoinTokenFile); err != nil {
		return fail(fmt.Errorf("daemon: join_token_file: %w", err))
	}
	if cfg.TLS, err = pki.LoadFiles(f.TLS.CA, f.TLS.Cert, f.TLS.Key); err != nil {
		return fail(fmt.Errorf("daemon: tls: %w", err))
	}
	if f.API != nil && f.API.CRL != "" {
		// A revoked certificate is refused on the cluster port as on the
		// API: an operator's could otherwise still propose there.
		rv, err := LoadRevocations(f.API.CRL, f.TLS.CA)
		if err != nil {
			return fail(fmt.Errorf("daemon: api.crl: %w", err))
		}
		cfg.TLS.VerifyPeer = rv.Check
	}
	if len(f.Fence) > 0 {
		set := &fencerSet{log: log, self: f.ID, lease: cfg.Lease, renewals: rn}
		closers = append(closers, set.close)
		if cfg.Fencer, err = fencers(ctx, f.Fence, set); err != nil {
			return fail(err)
		}
	}
	if f.Hypervisor != "" {
		h, err := libvirt.Open(ctx, f.Hypervisor, libvirt.WithLogger(log))
		if err != nil {
			return fail(fmt.Errorf("daemon: hypervisor %s: %w", f.Hypervisor, err))
		}
		closers = append(closers, func() { h.Close() })
		cfg.Hypervisor = h
		if strings.HasPrefix(f.Hypervisor, "test:") {
			// libvirt's test driver has no virDomainMigrate3: offering live
			// migration would fail every operator's migrate (ha gives up
			// with the hypervisor's error) and make each drain try once
			// before it falls back to stop and start.
			cfg.Hypervisor = noLiveMigration{Hypervisor: h}
		}
	}
	if f.Netguard != nil {
		if cfg.Guard, err = guard(f.Netguard, log); err != nil {
			return fail(err)
		}
	}
	cfg.Storage = backends(f, log)
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	return cfg, cleanup, nil
}

// watchdog opens the hardware watchdog, if the file names one, and sets
// the fence policy. It comes first among what build opens, so that any
// failure after it leaves the device armed.
func (f *File) watchdog(cfg *ha.Config, log *slog.Logger) error {
	if f.Watchdog != nil {
		k, err := openWatchdog(f.Watchdog, log)
		if err != nil {
			return err
		}
		cfg.Watchdog = k
	}
	var err error
	if cfg.FencePolicy, err = parseFencePolicy(f.FencePolicy); err != nil {
		return fmt.Errorf("%w: fence_policy: %v", ErrConfig, err)
	}
	cfg.WatchdogTimeout = f.watchdogTimeout()
	if k, ok := cfg.Watchdog.(*watchdog.Keeper); ok && cfg.WatchdogTimeout > 0 && k.Timeout() > cfg.WatchdogTimeout {
		return fmt.Errorf("%w: timings.watchdog_timeout: %v is shorter than the %v the driver of %s runs with (it counts whole seconds): raise it, and reassign_after with it",
			ErrConfig, cfg.WatchdogTimeout, k.Timeout(), f.Watchdog.Device)
	}
	return nil
}

// guard opens the nftables guard the file configures.
func guard(n *Netguard, log *slog.Logger) (*nft.Guard, error) {
	var opts []nft.Option
	if n.Table != "" {
		opts = append(opts, nft.WithTable(n.Table))
	}
	if n.Bridge != "" {
		opts = append(opts, nft.WithBridge(n.Bridge))
	}
	return nft.New(append(opts, nft.WithLogger(log))...)
}

// backends are the storage backends of the kinds the file lists (nil for
// none).
func backends(f *File, log *slog.Logger) map[string]storage.Backend {
	if len(f.Storage) == 0 {
		return nil
	}
	out := map[string]storage.Backend{}
	for _, k := range f.Storage {
		switch k {
		case "iscsi":
			out[k] = iscsi.New(f.ID, iscsi.WithLogger(log))
		case "nfs":
			out[k] = nfs.New(f.ID, nfs.WithLogger(log))
		case "nbd":
			out[k] = nbd.New(nbd.WithHostName(f.ID), nbd.WithLogger(log))
		case "drbd":
			out[k] = drbd.New(drbd.WithHostName(f.ID), drbd.WithLogger(log))
		}
	}
	return out
}

func applyTimings(cfg *ha.Config, t Timings) {
	set := func(dst *time.Duration, v Duration) {
		if v > 0 {
			*dst = time.Duration(v)
		}
	}
	set(&cfg.KeepAlive, t.KeepAlive)
	set(&cfg.WarnTime, t.WarnTime)
	set(&cfg.DeadTime, t.DeadTime)
	set(&cfg.InitDead, t.InitDead)
	set(&cfg.Lease, t.Lease)
	set(&cfg.ReassignAfter, t.ReassignAfter)
}

// fencers builds one fence.Chain whose level i sends each host to its own
// i-th configured level (a host with fewer levels fails that level at once
// with fence.ErrUnknownHost). One Chain, rather than one per host, lets ha
// record every attempt in the incident.
func fencers(ctx context.Context, cfg map[string][]FenceLevel, set *fencerSet) (fence.Fencer, error) {
	depth := 0
	for _, levels := range cfg {
		depth = max(depth, len(levels))
	}
	chain := make([]fence.Level, depth)
	for i := range chain {
		byHost := hostFencers{}
		for host, levels := range cfg {
			if i >= len(levels) {
				continue
			}
			l := levels[i]
			f, err := set.level(ctx, host, l)
			if err != nil {
				return nil, fmt.Errorf("%w: fence.%s[%d]: %v", ErrConfig, host, i, err)
			}
			byHost[host] = f
			if chain[i].Method == "" {
				chain[i].Method = l.Method
			} else if chain[i].Method != l.Method {
				chain[i].Method = "mixed"
			}
			chain[i].Timeout = max(chain[i].Timeout, time.Duration(l.Timeout))
		}
		chain[i].Fencer = byHost
	}
	c, err := fence.NewChain(chain, fence.WithChainLogger(set.log))
	if err != nil {
		return nil, fmt.Errorf("%w: fence: %v", ErrConfig, err)
	}
	return c, nil
}

// noLiveMigration is a libvirt hypervisor that does not offer live
// migration (xenctl.Migrator): the Migrate field hides the method, so ha
// moves VMs by stop and start. Watching and pausing still work.
type noLiveMigration struct {
	*libvirt.Hypervisor
	Migrate struct{}
}

// hostFencers sends each host to its own fencer.
type hostFencers map[string]fence.Fencer

func (h hostFencers) Fence(ctx context.Context, host string) (fence.Proof, error) {
	f, ok := h[host]
	if !ok {
		return fence.Proof{}, fmt.Errorf("daemon: fence %s: %w at this level: add it under \"fence\" in the configuration", host, fence.ErrUnknownHost)
	}
	return f.Fence(ctx, host)
}
