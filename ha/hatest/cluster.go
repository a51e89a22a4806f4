// Package hatest runs a whole xenha cluster inside one test process: N
// members on an in-memory network with Raft's in-memory stores (fast, the
// default) or on real loopback TCP with bbolt logs in temporary directories,
// with helpers to crash, restart, partition and heal members. Embedders use
// it to test their own code against a real cluster; the failover code wires
// fake hypervisors, fencers, guards and storage per host through WithConfig.
package hatest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
)

// Cluster is an in-process cluster of members h1..hN.
type Cluster struct {
	t      testing.TB
	o      options
	fabric *Fabric
	ca     *pki.CA
	dir    string // data directories (TCP)

	mu      sync.Mutex
	members []*member
}

type member struct {
	id   string
	cfg  ha.Config
	mem  *ha.MemoryStore
	c    *ha.Cluster // nil while crashed
	down bool
}

type options struct {
	tcp       bool
	insecure  bool
	base      ha.Config
	configure func(i int, cfg *ha.Config)
	logger    *slog.Logger
	haOpts    []ha.Option
	noForm    bool
}

// Option adjusts New.
type Option func(*options)

// WithTCP runs the members on loopback TCP with bbolt logs in temporary
// directories, as in production, instead of in memory.
func WithTCP() Option { return func(o *options) { o.tcp = true } }

// WithInsecure runs the members in plaintext instead of mutual TLS.
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithProfile sets the base configuration (timings, failure handling) every
// member starts from; identity, network and TLS are filled in by the harness.
// The default is ha.FastLAN().
func WithProfile(cfg ha.Config) Option { return func(o *options) { o.base = cfg } }

// WithConfig lets the caller adjust member i's configuration (0-based) just
// before it starts, e.g. to plug in its hypervisor, fencer, guard and
// storage. It is called again on Restart with the member's previous
// configuration.
func WithConfig(fn func(i int, cfg *ha.Config)) Option {
	return func(o *options) { o.configure = fn }
}

// WithLogger sends the members' logs to l (default: discarded, or stderr at
// the level named by the environment variable HATEST_LOG).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithOptions passes ha.Options to every member's ha.New.
func WithOptions(opts ...ha.Option) Option {
	return func(o *options) { o.haOpts = append(o.haOpts, opts...) }
}

// Unformed starts the members without bootstrapping or joining them, for
// tests of the forming itself.
func Unformed() Option { return func(o *options) { o.noForm = true } }

// ClusterID is the cluster ID the harness uses.
const ClusterID = "hatest"

// JoinToken is the join token the harness uses.
const JoinToken = "hatest-join-token"

// New starts n members; the first bootstraps and the others join it. The
// cluster is closed when the test ends.
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	o := options{base: ha.FastLAN()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil && os.Getenv("HATEST_LOG") != "" {
		// HATEST_LOG=debug|info|warn sends every member's log to stderr.
		var level slog.Level
		_ = level.UnmarshalText([]byte(os.Getenv("HATEST_LOG")))
		o.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	c := &Cluster{t: t, o: o, fabric: NewFabric(!o.tcp)}
	if !o.insecure {
		ca, err := pki.NewCA(ClusterID)
		if err != nil {
			t.Fatal(err)
		}
		c.ca = ca
	}
	if o.tcp {
		// Made before closeAll is registered, so that the members are
		// closed before their directories are removed (cleanups run last
		// registered first).
		c.dir = t.TempDir()
	}
	t.Cleanup(c.closeAll)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		if _, err := c.add(ctx, !o.noForm); err != nil {
			t.Fatalf("hatest: start member %d: %v", i+1, err)
		}
	}
	return c
}

// CA is the cluster's certificate authority (nil with WithInsecure).
func (c *Cluster) CA() *pki.CA { return c.ca }

// Fabric is the network the members use.
func (c *Cluster) Fabric() *Fabric { return c.fabric }

// Add starts one more member and joins it; it returns its index.
func (c *Cluster) Add(ctx context.Context) (int, error) { return c.add(ctx, true) }

// Config returns the configuration member i was (last) started with.
func (c *Cluster) Config(i int) ha.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].cfg
}

// NewConfig returns a configuration for a member named id that would fit
// this cluster (network, TLS, token), for tests that start members by hand.
func (c *Cluster) NewConfig(id string) (ha.Config, error) {
	cfg := c.o.base
	cfg.ID = id
	cfg.ClusterID = ClusterID
	cfg.JoinToken = JoinToken
	cfg.Network = c.fabric.For(id)
	cfg.Logger = c.o.logger
	if c.o.tcp {
		cfg.BindAddr = "127.0.0.1:0"
		cfg.DataDir = filepath.Join(c.dir, id)
		cfg.InmemStore = false
	} else {
		cfg.BindAddr = id + ":7946"
		cfg.InmemStore = true
	}
	if c.ca != nil {
		tc, err := c.ca.Member(id)
		if err != nil {
			return cfg, err
		}
		cfg.TLS, cfg.Insecure = tc, false
	} else {
		cfg.TLS, cfg.Insecure = nil, true
	}
	return cfg, nil
}

func (c *Cluster) add(ctx context.Context, form bool) (int, error) {
	c.mu.Lock()
	i := len(c.members)
	id := fmt.Sprintf("h%d", i+1)
	c.mu.Unlock()
	cfg, err := c.NewConfig(id)
	if err != nil {
		return 0, err
	}
	if c.o.configure != nil {
		c.o.configure(i, &cfg)
	}
	m := &member{id: id, cfg: cfg}
	if !c.o.tcp {
		m.mem = ha.NewMemoryStore()
	}
	hc, err := c.start(ctx, m)
	if err != nil {
		return 0, err
	}
	// Restarts must come back on the same address.
	m.cfg.BindAddr = hc.Addr()
	m.c = hc
	c.mu.Lock()
	c.members = append(c.members, m)
	first := i == 0
	var via []string
	for _, o := range c.members[:i] {
		if o.c != nil {
			via = append(via, o.c.Addr())
		}
	}
	c.mu.Unlock()
	if !form {
		return i, nil
	}
	if first {
		err = hc.Bootstrap(ctx)
	} else {
		err = hc.Join(ctx, via...)
	}
	if err != nil {
		return 0, fmt.Errorf("member %s: %w", id, err)
	}
	return i, nil
}

func (c *Cluster) start(ctx context.Context, m *member) (*ha.Cluster, error) {
	opts := append([]ha.Option{}, c.o.haOpts...)
	if m.mem != nil {
		opts = append(opts, ha.WithMemoryStore(m.mem))
	}
	return ha.New(ctx, m.cfg, opts...)
}

// N is the number of members (crashed ones included).
func (c *Cluster) N() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.members)
}

// Member returns member i, or nil while it is crashed.
func (c *Cluster) Member(i int) *ha.Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].c
}

// ID is member i's ID ("h1" for i = 0).
func (c *Cluster) ID(i int) string { return fmt.Sprintf("h%d", i+1) }

// Crash stops member i abruptly: it is cut off the network first, so it
// says goodbye to no one, then its Raft node is shut down. Its storage is
// kept for Restart.
func (c *Cluster) Crash(i int) {
	c.mu.Lock()
	m := c.members[i]
	hc := m.c
	m.c, m.down = nil, true
	c.mu.Unlock()
	if hc == nil {
		return
	}
	c.fabric.setDown(m.id, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hc.Close(ctx); err != nil && !errors.Is(err, ha.ErrClosed) {
		c.t.Logf("hatest: crash %s: %v", m.id, err)
	}
}

// Restart starts crashed member i again on its storage and address; it
// rejoins with its state, without bootstrapping or joining.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	m := c.members[i]
	c.mu.Unlock()
	if m.c != nil {
		return fmt.Errorf("hatest: restart %s: it is running", m.id)
	}
	if c.o.configure != nil {
		c.o.configure(i, &m.cfg)
	}
	c.fabric.setDown(m.id, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var hc *ha.Cluster
	var err error
	// The old listener's port may take a moment to be free again.
	for attempt := 0; attempt < 50; attempt++ {
		if hc, err = c.start(ctx, m); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("hatest: restart %s: %w", m.id, err)
	}
	c.mu.Lock()
	m.c, m.down = hc, false
	c.mu.Unlock()
	return nil
}

// Partition splits the members into groups of indexes; members in no group
// form a group of their own.
func (c *Cluster) Partition(groups ...[]int) {
	ids := make([][]string, len(groups))
	for g, idx := range groups {
		for _, i := range idx {
			ids[g] = append(ids[g], c.ID(i))
		}
	}
	c.fabric.Partition(ids...)
}

// Heal ends any partition.
func (c *Cluster) Heal() { c.fabric.Heal() }

// Leader returns the index of a running member that believes it leads, or -1.
// During a partition two members may believe so; WaitLeader is stricter.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.c != nil && m.c.IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits until exactly one running member leads and every running
// member that can reach it agrees, and returns its index.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	for {
		if l := c.Leader(); l >= 0 {
			lid := c.ID(l)
			agree := true
			c.mu.Lock()
			for i, m := range c.members {
				if m.c == nil || i == l {
					continue
				}
				c.fabric.mu.Lock()
				reach := c.fabric.allowedLocked(m.id, lid)
				c.fabric.mu.Unlock()
				if m.c.IsLeader() {
					agree = false
				}
				if id, _ := m.c.Leader(); reach && id != lid {
					agree = false
				}
			}
			c.mu.Unlock()
			if agree {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("hatest: no single leader: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Running returns the indexes of members that are not crashed.
func (c *Cluster) Running() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, m := range c.members {
		if m.c != nil {
			out = append(out, i)
		}
	}
	return out
}

func (c *Cluster) closeAll() {
	c.mu.Lock()
	ms := append([]*member{}, c.members...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range ms {
		if m.c == nil {
			continue
		}
		wg.Add(1)
		go func(hc *ha.Cluster) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = hc.Close(ctx)
		}(m.c)
	}
	wg.Wait()
}

// MakeFollower makes sure member i does not lead, transferring leadership
// away from it if it does, so that a test that scripts a follower's death
// can run whichever member won the election.
func (c *Cluster) MakeFollower(ctx context.Context, i int) error {
	for {
		l, err := c.WaitLeader(ctx)
		if err != nil {
			return err
		}
		if l != i {
			return nil
		}
		if err := c.Member(l).TransferLeadership(ctx); err != nil && ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
