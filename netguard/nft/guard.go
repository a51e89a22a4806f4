package nft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/xenha/xenha/netguard"
)

// DefaultTable is the name of the bridge-family table a Guard owns unless
// [WithTable] says otherwise.
const DefaultTable = "xenha"

// sendBuffer is the netlink send buffer the guard asks for (as root it may
// exceed net.core.wmem_max): one Apply is one message batch, and with
// thousands of VIFs and their metadata it outgrows the default 208 KiB.
const sendBuffer = 8 << 20

// elemsPerMessage keeps one set-element message under netlink's 64 KiB
// attribute limit even with the longest metadata (maxComment).
const elemsPerMessage = 128

// Guard is a [netguard.Guard] and [netguard.Announcer] on nftables. It owns
// one table of the bridge family; nothing else in the kernel's ruleset is
// read or changed. Its methods are safe for concurrent use.
type Guard struct {
	table  string
	bridge string
	netns  int // fd of the network namespace, or -1 for the caller's
	log    *slog.Logger
	dial   nltest.Func // test hook: record the batches instead of sending them

	mu sync.Mutex // serializes Apply and Current of this process
	// last is the table this guard committed last, and lastGen the
	// namespace's ruleset generation just after: while the generation is
	// unchanged, the kernel holds exactly last, and the next Apply of the
	// same mode sends only the set elements that differ.
	last    *ruleset
	lastGen uint32
}

// Option configures a Guard.
type Option func(*Guard)

// WithTable names the table (default [DefaultTable]). Two guards on one host
// (one per bridge, say) need different tables; each drops only the MACs it
// guards, and a frame dropped by either is dropped.
func WithTable(name string) Option { return func(g *Guard) { g.table = name } }

// WithBridge names the bridge the guard's VIFs are on: announcements are sent
// on it. Without it Announce finds the bridge from the VIF's Port. The drop
// rules cover every bridge of the host either way (see [New]).
func WithBridge(name string) Option { return func(g *Guard) { g.bridge = name } }

// WithNetNS makes the guard work in the network namespace open as fd (a file
// of /run/netns or /proc/PID/ns/net), instead of the caller's. The caller
// keeps the fd open for the guard's life and closes it.
func WithNetNS(fd int) Option { return func(g *Guard) { g.netns = fd } }

// WithLogger sets where the guard logs (by default nowhere).
func WithLogger(l *slog.Logger) Option { return func(g *Guard) { g.log = l } }

// New returns a guard. Its rules match guarded MACs on every bridge of the
// host: scoping them to one bridge would need the kernel's nft_meta_bridge,
// which is often not built (it is not on xenha's CI kernel), and a guarded
// VM's MAC is unique on a host anyway.
//
// New does no I/O: in particular it leaves whatever table a previous process
// left in force, so a restart never opens blocked traffic; the first
// [Guard.Apply] replaces that state. A reboot does clear the table: a daemon
// applies its state (BlockAll at the least) before it starts any VM.
func New(opts ...Option) (*Guard, error) {
	g := &Guard{table: DefaultTable, netns: -1, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(g)
	}
	if g.table == "" || len(g.table) > 255 {
		return nil, fmt.Errorf("nft: table name %q: want 1 to 255 bytes", g.table)
	}
	if len(g.bridge) > 15 {
		return nil, fmt.Errorf("nft: bridge name %q longer than 15 bytes", g.bridge)
	}
	return g, nil
}

func (g *Guard) conn() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(growSendBuffer)}
	if g.netns >= 0 {
		opts = append(opts, nftables.WithNetNSFd(g.netns))
	}
	if g.dial != nil {
		opts = []nftables.ConnOption{nftables.WithTestDial(g.dial)}
	}
	return nftables.New(opts...)
}

func growSendBuffer(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil // not a real socket: nothing to size
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sendBuffer)
		if serr != nil { // not privileged: take what wmem_max allows
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sendBuffer)
		}
	}); err != nil {
		return err
	}
	return serr
}

// Apply puts s in force in one netlink batch, which the kernel commits
// atomically: the table is created if absent, deleted and rebuilt whole, so
// either all of s is in force afterwards or (on any error) the previous
// state still is. Packets never see a partial table. ctx is honoured until
// the batch is sent; a batch in flight completes.
func (g *Guard) Apply(ctx context.Context, s netguard.State) error {
	if err := s.Validate(); err != nil {
		return err
	}
	rs, err := build(g.table, s)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: apply to table bridge %s not sent: %w", g.table, err)
	}
	c, err := g.conn()
	if err != nil {
		return g.unavailable("open netlink", err)
	}
	queue := rs.queue
	if was := g.last; g.unchangedSinceLast(rs) {
		queue = func(c *nftables.Conn) error { return rs.queueChanges(c, was) }
	}
	g.last = nil // unknown until this batch is committed and its generation read
	if err := queue(c); err != nil {
		return g.unavailable("encode batch", err)
	}
	if err := c.Flush(); err != nil {
		return g.unavailable("commit batch", err)
	}
	if g.dial == nil {
		if gen, err := g.generation(); err == nil {
			g.last, g.lastGen = rs, gen
		}
	}
	g.log.LogAttrs(ctx, slog.LevelInfo, "netguard applied", slog.String("table", g.table),
		slog.String("mode", s.Mode.String()), slog.Int("vifs", len(s.Rules)))
	return nil
}

// unchangedSinceLast reports whether the kernel holds the table this guard
// committed last (no batch from anyone since) in rs's mode, so that the
// chains and rules stand and only set elements need to change. Anything
// else (another process's batch in this namespace, a failed read, a
// recorded conn) rebuilds the whole table, which is always right.
func (g *Guard) unchangedSinceLast(rs *ruleset) bool {
	if g.dial != nil || g.last == nil || g.last.mode != rs.mode {
		return false
	}
	gen, err := g.generation()
	return err == nil && gen == g.lastGen
}

// queueChanges adds to c's batch the set elements that differ between the
// table in force (was) and rs, deletions first: a switch of 1,000 VIFs then
// sends 2,000 elements instead of the whole table twice (deleted and made).
func (rs *ruleset) queueChanges(c *nftables.Conn, was *ruleset) error {
	key := func(e nftables.SetElement) string { return string(e.Key) + "\x00" + e.Comment }
	for i, set := range rs.sets {
		have := make(map[string]bool, len(was.elems[i]))
		for _, e := range was.elems[i] {
			have[key(e)] = true
		}
		var add []nftables.SetElement
		for _, e := range rs.elems[i] {
			if !have[key(e)] {
				add = append(add, e)
			}
			delete(have, key(e))
		}
		var del []nftables.SetElement
		for _, e := range was.elems[i] {
			if have[key(e)] {
				del = append(del, e)
			}
		}
		for elems := range slices.Chunk(del, elemsPerMessage) {
			if err := c.SetDeleteElements(set, elems); err != nil {
				return err
			}
		}
		for elems := range slices.Chunk(add, elemsPerMessage) {
			if err := c.SetAddElements(set, elems); err != nil {
				return err
			}
		}
	}
	return nil
}

// queue adds the whole table to c's batch. Adding the table first makes the
// delete succeed whether or not it existed, all in the same transaction.
func (rs *ruleset) queue(c *nftables.Conn) error {
	c.AddTable(rs.table)
	c.DelTable(rs.table)
	c.AddTable(rs.table)
	for i, set := range rs.sets {
		if err := c.AddSet(set, nil); err != nil {
			return err
		}
		// A netlink attribute is at most 64 KiB: elements go in chunks.
		for elems := range slices.Chunk(rs.elems[i], elemsPerMessage) {
			if err := c.SetAddElements(set, elems); err != nil {
				return err
			}
		}
	}
	for _, ch := range rs.chains {
		c.AddChain(ch)
	}
	for _, r := range rs.rules {
		c.AddRule(r)
	}
	return nil
}

// readAttempts bounds how often Current re-reads a table that another
// process keeps changing under it.
const readAttempts = 32

// Current reads the state in force back from the kernel. With no table, it
// is the empty state (nothing guarded). A table changed by something other
// than a Guard is reported as ErrUnavailable rather than guessed at. The
// read is consistent: if a batch lands while it reads, it reads again.
func (g *Guard) Current(ctx context.Context) (netguard.State, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for attempt := range readAttempts {
		if err := ctx.Err(); err != nil {
			return netguard.State{}, fmt.Errorf("nft: read table bridge %s: %w", g.table, err)
		}
		if g.dial != nil { // recorded conn: no kernel, no generations
			return g.read()
		}
		before, err := g.generation()
		if err != nil {
			return netguard.State{}, g.unavailable("read ruleset generation", err)
		}
		// A read that spans a commit can look inconsistent (say, port sets
		// of the new state beside MACs of the old): only a read within one
		// generation is judged, error or not.
		s, rerr := g.read()
		after, err := g.generation()
		if err != nil {
			return netguard.State{}, g.unavailable("read ruleset generation", err)
		}
		if before == after {
			return s, rerr
		}
		g.log.DebugContext(ctx, "netguard: ruleset changed while reading, reading again", "table", g.table)
		// Back off a little, so that a busy writer lets a read through.
		select {
		case <-time.After(time.Duration(attempt+1) * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return netguard.State{}, fmt.Errorf("%w: nft: table bridge %s: the ruleset changed during each of %d reads; something commits batches non-stop",
		netguard.ErrUnavailable, g.table, readAttempts)
}

// read reads the table once; see Current.
func (g *Guard) read() (netguard.State, error) {
	c, err := g.conn()
	if err != nil {
		return netguard.State{}, g.unavailable("open netlink", err)
	}
	t, err := c.ListTableOfFamily(g.table, nftables.TableFamilyBridge)
	if errors.Is(err, syscall.ENOENT) {
		return netguard.State{}, nil
	}
	if err != nil {
		return netguard.State{}, g.unavailable("list table", err)
	}
	rules := map[string][]string{}
	for _, name := range []string{chainFwd, chainInput, chainOutput} {
		rr, err := c.GetRules(t, &nftables.Chain{Name: name, Table: t})
		if err != nil {
			return netguard.State{}, g.unavailable("list rules of chain "+name, err)
		}
		for _, r := range rr {
			rules[name] = append(rules[name], describe(r.Exprs))
		}
	}
	mode, err := modeOf(rules)
	if err != nil {
		return netguard.State{}, g.unreadable(err)
	}
	var elems [4][]nftables.SetElement
	for i, name := range []string{setGuarded, setAllowed, setGPorts, setAPorts} {
		set, err := c.GetSetByName(t, name)
		if err != nil {
			return netguard.State{}, g.unavailable("get set "+name, err)
		}
		if elems[i], err = c.GetSetElements(set); err != nil {
			return netguard.State{}, g.unavailable("list set "+name, err)
		}
	}
	s, err := stateOf(mode, elems[0], elems[1])
	if err != nil {
		return netguard.State{}, g.unreadable(err)
	}
	// The port sets follow from the MACs' metadata; if they do not, the
	// state in force is not the one read (someone edited them).
	want, err := build(g.table, s)
	if err != nil {
		return netguard.State{}, g.unreadable(err)
	}
	for i, name := range []string{setGPorts, setAPorts} {
		if !sameKeys(elems[2+i], want.elems[2+i]) {
			return netguard.State{}, g.unreadable(fmt.Errorf("set %s does not match the ports of the guarded VIFs (edited by hand?)", name))
		}
	}
	return s, nil
}

func sameKeys(a, b []nftables.SetElement) bool {
	keys := func(es []nftables.SetElement) []string {
		var out []string
		for _, e := range es {
			out = append(out, string(e.Key))
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(keys(a), keys(b))
}

// unreadable reports a table whose content is not what a Guard writes.
func (g *Guard) unreadable(err error) error {
	return fmt.Errorf("%w: nft: table bridge %s: %w; Apply the desired state to rebuild it", netguard.ErrUnavailable, g.table, err)
}

func (g *Guard) unavailable(what string, err error) error {
	hint := "is nf_tables loaded and the process root (CAP_NET_ADMIN)?"
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		hint = "netguard needs CAP_NET_ADMIN"
	}
	return fmt.Errorf("%w: nft: %s of table bridge %s: %w (%s)", netguard.ErrUnavailable, what, g.table, err, hint)
}
