// Command daemon is a realistic xenha host daemon: what runs on every dom0 of
// a pool. It reads one JSON file (see File and testdata/xen-a.json), wires
// ha with libvirt (xenctl/libvirt), IPMI fencing chains (fence, fence/ipmi),
// the nftables guard (netguard/nft) and the storage backends it names
// (storage/nbd, storage/drbd) and, if the file names one, the hardware
// watchdog (fence/watchdog, fed the host's lease; testdata/lease-expiry.json
// lets the pool count a watchdog reset as a fence). It forms or joins the
// pool, logs the cluster's events, and leaves cleanly on SIGINT or SIGTERM.
//
// Embedders copy build (File → ha.Config with its plug-ins) and run (New,
// Bootstrap or Join, Subscribe, Close); the rest is flag handling.
//
//	daemon -config /etc/xenha/daemon.json          # run
//	daemon -config /etc/xenha/daemon.json -check   # only check the file
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xenha/xenha/examples/internal/member"
	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/ipmi"
	"github.com/xenha/xenha/fence/watchdog"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
	"github.com/xenha/xenha/netguard/nft"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/drbd"
	"github.com/xenha/xenha/storage/nbd"
	"github.com/xenha/xenha/xenctl/libvirt"
)

func main() {
	path := flag.String("config", "/etc/xenha/daemon.json", "configuration file (JSON)")
	check := flag.Bool("check", false, "check the configuration file and exit")
	verbose := flag.Bool("v", false, "log at debug level")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	f, err := LoadFile(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *check {
		fmt.Printf("%s: ok (host %s, pool %s)\n", *path, f.ID, f.ClusterID)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f, log, nil); err != nil {
		log.Error("daemon stopped", "err", err)
		os.Exit(1)
	}
}

// run is the daemon's life: start the member, enter the pool, report
// events until ctx ends, close. ready, if set, is called once the member is
// in the pool.
func run(ctx context.Context, f *File, log *slog.Logger, ready func(*ha.Cluster)) error {
	cfg, cleanup, err := build(ctx, f, log)
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
func build(ctx context.Context, f *File, log *slog.Logger) (ha.Config, func(), error) {
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
	if f.Watchdog != nil {
		// First, so that any failure after it leaves the device armed.
		k, err := openWatchdog(f.Watchdog, log)
		if err != nil {
			return fail(err)
		}
		cfg.Watchdog = k
	}
	if cfg.FencePolicy, err = parseFencePolicy(f.FencePolicy); err != nil {
		return fail(fmt.Errorf("%w: fence_policy: %v", ErrConfig, err))
	}
	cfg.WatchdogTimeout = f.watchdogTimeout()
	if k, ok := cfg.Watchdog.(*watchdog.Keeper); ok && cfg.WatchdogTimeout > 0 && k.Timeout() > cfg.WatchdogTimeout {
		return fail(fmt.Errorf("%w: timings.watchdog_timeout: %v is shorter than the %v the driver of %s runs with (it counts whole seconds): raise it, and reassign_after with it",
			ErrConfig, cfg.WatchdogTimeout, k.Timeout(), f.Watchdog.Device))
	}
	if cfg.JoinToken, err = member.ReadJoinToken(f.JoinTokenFile); err != nil {
		return fail(fmt.Errorf("daemon: join_token_file: %w", err))
	}
	if cfg.TLS, err = pki.LoadFiles(f.TLS.CA, f.TLS.Cert, f.TLS.Key); err != nil {
		return fail(fmt.Errorf("daemon: tls: %w", err))
	}
	if len(f.Fence) > 0 {
		if cfg.Fencer, err = fencers(f.Fence, log); err != nil {
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
	}
	if f.Netguard != nil {
		var opts []nft.Option
		if f.Netguard.Table != "" {
			opts = append(opts, nft.WithTable(f.Netguard.Table))
		}
		if f.Netguard.Bridge != "" {
			opts = append(opts, nft.WithBridge(f.Netguard.Bridge))
		}
		g, err := nft.New(append(opts, nft.WithLogger(log))...)
		if err != nil {
			return fail(err)
		}
		cfg.Guard = g
	}
	if len(f.Storage) > 0 {
		cfg.Storage = map[string]storage.Backend{}
		for _, k := range f.Storage {
			switch k {
			case "nbd":
				cfg.Storage[k] = nbd.New(nbd.WithHostName(f.ID), nbd.WithLogger(log))
			case "drbd":
				cfg.Storage[k] = drbd.New(drbd.WithHostName(f.ID), drbd.WithLogger(log))
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	return cfg, cleanup, nil
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
func fencers(cfg map[string][]FenceLevel, log *slog.Logger) (fence.Fencer, error) {
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
			iface := ipmi.Lanplus
			if l.Interface == "lan" {
				iface = ipmi.Lan
			}
			f, err := ipmi.New(map[string]ipmi.Target{host: {Address: l.Address, Port: l.Port, User: l.User,
				Interface: iface, PasswordFile: l.PasswordFile}}, ipmi.WithLogger(log))
			if err != nil {
				return nil, fmt.Errorf("%w: fence.%s[%d]: %v", ErrConfig, host, i, err)
			}
			byHost[host] = f
			chain[i].Method = l.Method
			chain[i].Timeout = max(chain[i].Timeout, time.Duration(l.Timeout))
		}
		chain[i].Fencer = byHost
	}
	c, err := fence.NewChain(chain, fence.WithChainLogger(log))
	if err != nil {
		return nil, fmt.Errorf("%w: fence: %v", ErrConfig, err)
	}
	return c, nil
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
