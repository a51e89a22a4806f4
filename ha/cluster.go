package ha

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/xenha/xenha/ha/internal/logadapter"
)

// Cluster is one member of a xenha pool: a Raft node holding the replicated
// State, the cluster RPC server on the same listener, and (through
// startFailover) the failover services. Create it with New, then Bootstrap a
// new cluster or Join an existing one; a member restarted on its data
// directory needs neither.
type Cluster struct {
	cfg         Config
	log         *slog.Logger
	fsm         *fsm
	raft        *raft.Raft
	trans       *raft.NetworkTransport
	dialer      *dialer
	addr        string // advertised
	incarnation string
	existing    atomic.Bool // the member has cluster state (restarted, bootstrapped or joined)
	closers     []io.Closer
	store       *watchedStore // the Raft log and stable store, watched for failing writes

	events  events
	peers   peerHealth
	rpcPool rpcPool

	members     memberView    // who may act here (authz.go)
	membersPoke chan struct{} // Raft stored a configuration

	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	hooksMu     sync.Mutex
	started     bool
	leaderHooks []func(ctx context.Context)
	startHooks  []func(ctx context.Context)

	leaderMu     sync.Mutex
	leaderCtx    context.Context
	leaderCancel context.CancelFunc
	leaderSince  time.Time

	closeOnce sync.Once
	closeErr  error
}

// Option adjusts New.
type Option func(*options)

type options struct {
	mem      *MemoryStore
	batching bool
	// wrapLogs, when set, wraps the member's Raft log store (tests: a disk
	// whose writes stall now and then).
	wrapLogs func(raft.LogStore) raft.LogStore
}

// WithMemoryStore keeps the member's Raft log, stable store and snapshots in
// ms instead of DataDir (tests: a harness passes the same store to a
// restarted member, which then rejoins with its state as from disk).
func WithMemoryStore(ms *MemoryStore) Option { return func(o *options) { o.mem = ms } }

// WithBatching turns Raft's apply batching on (the default) or off: with it,
// concurrent proposals share log writes and are applied in batches.
func WithBatching(on bool) Option { return func(o *options) { o.batching = on } }

// MemoryStore is a member's Raft storage held in memory.
type MemoryStore struct {
	store *raft.InmemStore
	snaps *raft.InmemSnapshotStore
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{store: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore()}
}

const incarnationKey = "xenha.incarnation"

// New opens the member's storage and listener and starts its Raft node.
// It validates cfg first and changes nothing if cfg is invalid. A member
// whose storage already holds cluster state resumes as a member; otherwise
// call Bootstrap or Join.
func New(ctx context.Context, cfg Config, opts ...Option) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{batching: true}
	for _, opt := range opts {
		opt(&o)
	}
	if o.mem != nil {
		cfg.InmemStore = true
	}
	cfg = cfg.withDefaults()
	c := &Cluster{cfg: cfg, log: cfg.Logger.With("member", cfg.ID),
		members: memberView{self: cfg.ID}, membersPoke: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			c.cancel()
			c.closeStores()
		}
	}()

	rawLogs, rawStable, snaps, err := c.openStores(o.mem)
	if err != nil {
		return nil, err
	}
	if o.wrapLogs != nil {
		rawLogs = o.wrapLogs(rawLogs)
	}
	c.store = newWatchedStore(rawLogs, rawStable, c.storeChanged)
	c.store.configStored = c.pokeMembers
	logs, stable := raft.LogStore(c.store), raft.StableStore(c.store)
	existing, err := raft.HasExistingState(logs, stable, snaps)
	c.existing.Store(existing)
	if err != nil {
		return nil, fmt.Errorf("ha: member %s: read Raft state: %w", cfg.ID, err)
	}
	if c.incarnation, err = loadIncarnation(stable); err != nil {
		return nil, fmt.Errorf("ha: member %s: %w", cfg.ID, err)
	}
	if err := c.loadSponsors(stable); err != nil {
		return nil, fmt.Errorf("ha: member %s: %w", cfg.ID, err)
	}

	ln, err := cfg.Network.Listen(ctx, cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("ha: member %s: listen on %s: %w", cfg.ID, cfg.BindAddr, err)
	}
	c.addr = cfg.AdvertiseAddr
	if c.addr == "" {
		c.addr = ln.Addr().String()
	}
	var sec *security
	if cfg.TLS != nil {
		sec = &security{ca: cfg.TLS.CA, cert: cfg.TLS.Cert, verify: cfg.TLS.VerifyPeer}
	}
	c.dialer = &dialer{net: cfg.Network, sec: sec, clusterID: cfg.ClusterID, self: cfg.ID}
	m := &mux{
		ln: ln, sec: sec, clusterID: cfg.ClusterID, self: cfg.ID,
		raftConns: make(chan net.Conn),
		rpc:       c.serveRPC,
		admit:     c.admitPeer,
		mayStay:   c.members.mayStay,
		log:       func(msg string, args ...any) { c.log.Warn(msg, args...) },
		closed:    make(chan struct{}),
	}
	stream := &streamLayer{mux: m, dialer: c.dialer, addr: advertised(c.addr), idOf: c.idOf}
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  logadapter.Hclog(c.log, "raft-net"),
	})
	c.closers = append(c.closers, c.trans)

	c.fsm = newFSM(cfg.ClusterID, c.emit, c.log)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.BatchApplyCh = o.batching
	rc.Logger = logadapter.Hclog(c.log, "raft")
	notify := make(chan bool, 1)
	rc.NotifyCh = notify
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, &ConfigError{Field: "HeartbeatTimeout", Msg: err.Error()}
	}

	// The failover code registers its hooks before Raft can apply anything,
	// so that no applied command escapes onApplied.
	c.startFailover()

	trans := newGuarded(c.trans, c.checkRaftRPC, c.ctx.Done())
	r, err := raft.NewRaft(rc, c.fsm, logs, stable, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("ha: member %s: start Raft: %w", cfg.ID, err)
	}
	c.raft = r
	ok = true

	obs := make(chan raft.Observation, 64)
	r.RegisterObserver(raft.NewObserver(obs, false, nil))
	c.refreshMembers()
	c.wg.Add(4)
	go func() { defer c.wg.Done(); c.watchMembers() }()
	go func() { defer c.wg.Done(); m.serve() }()
	go func() { defer c.wg.Done(); c.watchLeadership(notify) }()
	go func() { defer c.wg.Done(); c.watchObservations(obs) }()

	c.hooksMu.Lock()
	c.started = true
	for _, fn := range c.startHooks {
		c.goHook(c.ctx, fn)
	}
	c.hooksMu.Unlock()
	c.log.Info("member started", "addr", c.addr, "existing_state", c.existing.Load())
	return c, nil
}

// storeChanged reports a change in whether writing the Raft log works.
func (c *Cluster) storeChanged(err error, since time.Time) {
	if err != nil {
		c.log.Error("writing the Raft log fails: this member cannot follow the log until it works again", "err", err)
		c.emit(Event{Kind: EventStoreFailed, Host: c.cfg.ID, Message: err.Error()})
		return
	}
	c.log.Info("writing the Raft log works again")
	c.emit(Event{Kind: EventStoreRecovered, Host: c.cfg.ID})
}

func (c *Cluster) openStores(mem *MemoryStore) (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	if mem != nil {
		return mem.store, mem.store, mem.snaps, nil
	}
	if c.cfg.InmemStore {
		return raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore(), nil
	}
	if err := os.MkdirAll(c.cfg.DataDir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("ha: member %s: data directory: %w", c.cfg.ID, err)
	}
	if err := os.Chmod(c.cfg.DataDir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("ha: member %s: data directory: %w", c.cfg.ID, err)
	}
	lock, err := lockDataDir(c.cfg.DataDir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ha: member %s: %w", c.cfg.ID, err)
	}
	c.closers = append(c.closers, lock)
	bolt, err := openBolt(c.cfg.DataDir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ha: member %s: %w", c.cfg.ID, err)
	}
	c.closers = append(c.closers, bolt)
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(c.cfg.DataDir, 2, logadapter.Hclog(c.log, "snapshots"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ha: member %s: snapshot store in %s: %w", c.cfg.ID, c.cfg.DataDir, err)
	}
	tightenSnapshots(c.cfg.DataDir)
	snaps := &privateSnapshots{SnapshotStore: fileSnaps, dir: c.cfg.DataDir}
	if err := checkStable(c.cfg.DataDir, bolt, bolt, snaps); err != nil {
		return nil, nil, nil, fmt.Errorf("ha: member %s: %w", c.cfg.ID, err)
	}
	if err := checkStoredEntries(bolt); err != nil {
		return nil, nil, nil, fmt.Errorf("ha: member %s: %w", c.cfg.ID, err)
	}
	return bolt, bolt, snaps, nil
}

func loadIncarnation(stable raft.StableStore) (string, error) {
	b, err := stable.Get([]byte(incarnationKey))
	if err == nil && len(b) > 0 {
		return string(b), nil
	}
	id := newRequestID()
	if err := stable.Set([]byte(incarnationKey), []byte(id)); err != nil {
		return "", fmt.Errorf("record incarnation: %w", err)
	}
	return id, nil
}

func (c *Cluster) closeStores() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i].Close()
	}
	c.closers = nil
}

// newRequestID returns a random 128-bit ID.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID is this member's ID.
func (c *Cluster) ID() string { return c.cfg.ID }

// Addr is the address peers reach this member on.
func (c *Cluster) Addr() string { return c.addr }

// Fresh reports whether this member started without cluster state, so it
// must Bootstrap or Join; a restarted member is not fresh.
func (c *Cluster) Fresh() bool { return !c.existing.Load() }

// Leader returns the current leader's ID and address as this member knows
// them, empty if none.
func (c *Cluster) Leader() (id, addr string) {
	a, i := c.raft.LeaderWithID()
	return string(i), string(a)
}

// IsLeader reports whether this member is the leader.
func (c *Cluster) IsLeader() bool { return c.isLeader() }

// Bootstrap forms a new cluster with this member as its only voter and
// registers it as a host. It refuses (ErrAlreadyBootstrapped) on a member
// that already has state: a restarted member rejoins on its own.
func (c *Cluster) Bootstrap(ctx context.Context) error {
	if c.existing.Load() {
		return fmt.Errorf("ha: bootstrap member %s: %w; it rejoins from its data directory on its own", c.cfg.ID, ErrAlreadyBootstrapped)
	}
	f := c.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(c.cfg.ID), Address: raft.ServerAddress(c.addr),
	}}})
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("ha: bootstrap member %s: %w", c.cfg.ID, ErrAlreadyBootstrapped)
		}
		return fmt.Errorf("ha: bootstrap member %s: %w", c.cfg.ID, err)
	}
	c.existing.Store(true)
	c.refreshMembers()
	role := c.cfg.Role
	if role == RoleNonVoter {
		role = RoleVoter // the first member must vote
	}
	_, err := c.propose(ctx, &hostJoin{Host: Host{ID: c.cfg.ID, Addr: c.addr, Role: role, Incarnation: c.incarnation}})
	return err
}

// Close stops the member: its services, Raft and the listener. It does not
// leave the cluster (see Leave); a closed member restarted on its data
// directory rejoins.
func (c *Cluster) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.cancel()
		done := make(chan error, 1)
		go func() { done <- c.raft.Shutdown().Error() }()
		select {
		case c.closeErr = <-done:
		case <-ctx.Done():
			c.closeErr = fmt.Errorf("ha: close member %s: %w", c.cfg.ID, ctx.Err())
		}
		c.rpcPool.closeAll()
		// Services end with c.ctx; wait for them before closing the stores
		// they may still read through Raft, but not past the caller's ctx.
		waited := make(chan struct{})
		go func() { c.wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			if c.closeErr == nil {
				c.closeErr = fmt.Errorf("ha: close member %s: services still running: %w", c.cfg.ID, ctx.Err())
			}
		}
		c.closeStores()
		c.log.Info("member closed")
	})
	return c.closeErr
}

// isLeader reports whether this member is the Raft leader.
func (c *Cluster) isLeader() bool { return c.raft.State() == raft.Leader }

// read runs fn on the local (possibly stale) state under the FSM's read lock.
// fn must not keep pointers into the state or block.
func (c *Cluster) read(fn func(s *State)) { c.fsm.read(fn) }

// barrier waits until every entry committed before it is applied here.
// Leader only.
func (c *Cluster) barrier(ctx context.Context) error {
	err := c.raft.Barrier(timeoutOf(ctx)).Error()
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return fmt.Errorf("ha: barrier on %s: %w", c.cfg.ID, ErrNotLeader)
	}
	if err != nil {
		return fmt.Errorf("ha: barrier on %s: %w", c.cfg.ID, err)
	}
	return nil
}

// timeoutOf is ctx's remaining time, or a minute without a deadline (Raft
// wants a duration, not a context).
func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return time.Minute
}

// onApplied registers fn to run on this member after every applied command
// (refusals included). It runs in the FSM's goroutine, outside its lock:
// keep it cheap and never block.
func (c *Cluster) onApplied(fn func(cmd command, m applyMeta, result any, err error)) {
	c.fsm.addHook(fn)
}

// onLeadership registers fn to run in a goroutine each time this member
// becomes leader; its ctx ends when leadership is lost or the member closes.
func (c *Cluster) onLeadership(fn func(ctx context.Context)) {
	c.hooksMu.Lock()
	c.leaderHooks = append(c.leaderHooks, fn)
	c.hooksMu.Unlock()
	c.leaderMu.Lock()
	defer c.leaderMu.Unlock()
	if c.leaderCtx != nil {
		c.goHook(c.leaderCtx, fn)
	}
}

// onStart registers fn to run in a goroutine for the member's life; its ctx
// ends when the member closes.
func (c *Cluster) onStart(fn func(ctx context.Context)) {
	c.hooksMu.Lock()
	defer c.hooksMu.Unlock()
	c.startHooks = append(c.startHooks, fn)
	if c.started {
		c.goHook(c.ctx, fn)
	}
}

func (c *Cluster) goHook(ctx context.Context, fn func(context.Context)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn(ctx)
	}()
}

// leaderSinceTime is when this member last became leader (zero if it is not).
func (c *Cluster) leaderSinceTime() time.Time {
	c.leaderMu.Lock()
	defer c.leaderMu.Unlock()
	return c.leaderSince
}

// watchLeadership turns Raft's leadership notifications into leader
// contexts, hooks and events.
func (c *Cluster) watchLeadership(notify <-chan bool) {
	stop := func() {
		c.leaderMu.Lock()
		if c.leaderCancel != nil {
			c.leaderCancel()
			c.peers.reset()
			c.leaderCtx, c.leaderCancel, c.leaderSince = nil, nil, time.Time{}
			c.emit(Event{Kind: EventLeaderLost, Host: c.cfg.ID})
			c.log.Info("leadership lost")
		}
		c.leaderMu.Unlock()
	}
	defer stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case leader := <-notify:
			if !leader {
				stop()
				continue
			}
			c.leaderMu.Lock()
			if c.leaderCancel == nil {
				c.peers.reset()
				c.leaderCtx, c.leaderCancel = context.WithCancel(c.ctx)
				c.leaderSince = time.Now()
				c.hooksMu.Lock()
				hooks := append([]func(context.Context){c.reconcileMembers}, c.leaderHooks...)
				c.hooksMu.Unlock()
				for _, fn := range hooks {
					c.goHook(c.leaderCtx, fn)
				}
				c.emit(Event{Kind: EventLeaderElected, Host: c.cfg.ID})
				c.log.Info("became leader")
			}
			c.leaderMu.Unlock()
		}
	}
}

// watchObservations follows leader changes and peer heartbeats.
func (c *Cluster) watchObservations(obs <-chan raft.Observation) {
	for {
		select {
		case <-c.ctx.Done():
			return
		case o := <-obs:
			switch v := o.Data.(type) {
			case raft.LeaderObservation:
				if v.LeaderID != "" {
					c.emit(Event{Kind: EventLeaderChanged, Host: string(v.LeaderID)})
				}
			case raft.FailedHeartbeatObservation:
				// Only the leader heartbeats; a report from a term this
				// member no longer leads would outlive the reset.
				if c.isLeader() {
					c.peers.failed(string(v.PeerID), v.LastContact)
				}
			case raft.ResumedHeartbeatObservation:
				c.peers.resumed(string(v.PeerID))
			}
		}
	}
}

// idOf maps a Raft address to the member ID registered there. It reads the
// replicated host table (hosts are registered before Raft adds them), not
// Raft's configuration, which would need Raft's main loop from inside its
// own transport.
func (c *Cluster) idOf(addr raft.ServerAddress) string {
	id := ""
	c.fsm.read(func(s *State) {
		for _, h := range s.Hosts {
			if h.Addr == string(addr) && h.State != HostLeft {
				id = h.ID
			}
		}
	})
	return id
}
