package libvirt

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/internal/eventq"
)

// Hypervisor is a libvirt connection to one host. It implements
// xenctl.Hypervisor, xenctl.Migrator, xenctl.Watcher and xenctl.Pauser and is
// safe for concurrent use. Create it with Open.
type Hypervisor struct {
	uri          string
	log          *slog.Logger
	keepInterval int
	keepCount    uint
	dialTimeout  time.Duration
	maxBackoff   time.Duration
	pollEvery    time.Duration
	retryConnect bool

	mu     sync.Mutex
	conn   *connRef // nil while disconnected
	gen    uint64   // the current connection's generation
	dials  uint64   // generations handed out: one per dial, never reused
	driver string   // virConnectGetType of the current connection
	closed bool
	subs   map[*eventq.Queue[xenctl.Event]]struct{}

	lost    chan struct{} // wakes the monitor: the connection broke
	done    chan struct{} // closed by Close
	life    context.Context
	endLife context.CancelFunc    // cancels background calls at Close
	queue   *eventq.Queue[queued] // raw lifecycle events and connection markers, in order
	wg      sync.WaitGroup
}

// Option configures a Hypervisor.
type Option func(*Hypervisor)

// WithLogger logs connection losses, reconnections and abandoned calls.
func WithLogger(l *slog.Logger) Option { return func(h *Hypervisor) { h.log = l } }

// WithKeepAlive sets libvirt's keepalive: a probe every interval seconds, and
// the connection is declared dead after count unanswered probes. The default,
// 2 s and 3, notices a dead or hung remote daemon within about 8 s. Local
// drivers (test:///) have no keepalive.
func WithKeepAlive(interval int, count uint) Option {
	return func(h *Hypervisor) { h.keepInterval, h.keepCount = interval, count }
}

// WithReconnectBackoff caps the wait between reconnection attempts (default 1 s).
func WithReconnectBackoff(max time.Duration) Option {
	return func(h *Hypervisor) { h.maxBackoff = max }
}

// WithRetryConnect makes Open succeed even when libvirt does not answer yet,
// for a daemon that may start before libvirtd: calls fail with
// xenctl.ErrUnavailable until the first connection, which watchers see as
// EventReconnected with the inventory. A URI that can never connect is then
// retried forever rather than reported.
func WithRetryConnect() Option { return func(h *Hypervisor) { h.retryConnect = true } }

// WithPollInterval sets how often Shutdown polls the guest's state and Migrate
// polls job progress (default 100 ms).
func WithPollInterval(d time.Duration) Option { return func(h *Hypervisor) { h.pollEvery = d } }

// Open connects to the libvirt URI, e.g. "xen:///system", "qemu:///system",
// "qemu+unix:///system?socket=/run/x/libvirt-sock" or "test:///default". It
// returns an error wrapping xenctl.ErrUnavailable if libvirt does not answer
// before ctx ends.
func Open(ctx context.Context, uri string, opts ...Option) (*Hypervisor, error) {
	h := &Hypervisor{
		uri: uri, keepInterval: 2, keepCount: 3, dialTimeout: 10 * time.Second,
		maxBackoff: time.Second, pollEvery: 100 * time.Millisecond,
		subs: map[*eventq.Queue[xenctl.Event]]struct{}{}, lost: make(chan struct{}, 1), done: make(chan struct{}),
	}
	for _, o := range opts {
		o(h)
	}
	if h.log == nil {
		h.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h.queue = eventq.New[queued]()
	h.life, h.endLife = context.WithCancel(context.Background())
	if err := startEventLoop(); err != nil {
		return nil, fmt.Errorf("libvirt %s: %w: starting the event loop: %v", uri, xenctl.ErrUnavailable, err)
	}
	h.dials = 1
	c, driver, err := h.dial(ctx, 1)
	switch {
	case err == nil:
		h.conn, h.gen, h.driver = c, 1, driver
	case h.retryConnect:
		h.log.Warn("libvirt not reachable yet; retrying in the background", "uri", uri, "err", err)
	default:
		h.endLife()
		return nil, err
	}
	h.wg.Add(2)
	go h.monitor()
	go h.dispatch()
	return h, nil
}

// URI returns the connection URI.
func (h *Hypervisor) URI() string { return h.uri }

// dial opens a connection for generation gen, with keepalive, a close callback
// and the lifecycle event callback registered.
func (h *Hypervisor) dial(ctx context.Context, gen uint64) (*connRef, string, error) {
	type result struct {
		c      *libvirt.Connect
		driver string
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := libvirt.NewConnect(h.uri)
		if err != nil {
			ch <- result{err: err}
			return
		}
		// Local drivers refuse keepalive; only remote connections need it.
		_ = c.SetKeepAlive(h.keepInterval, h.keepCount)
		driver, err := c.GetType()
		if err == nil {
			err = c.RegisterCloseCallback(func(_ *libvirt.Connect, reason libvirt.ConnectCloseReason) {
				h.log.Warn("libvirt connection closed", "uri", h.uri, "reason", int(reason))
				h.connectionLost(gen)
			})
		}
		if err == nil {
			_, err = c.DomainEventLifecycleRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, ev *libvirt.DomainEventLifecycle) {
				h.queue.Push(queued{gen: gen, raw: rawEvent(d, ev)})
			})
		}
		if err != nil {
			closeRaw(c)
			ch <- result{err: err}
			return
		}
		ch <- result{c: c, driver: driver}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, "", wrapErr(h.uri, "connect", r.err, false)
		}
		return newConnRef(r.c), r.driver, nil
	case <-ctx.Done():
		go func() { // the dial finishes by itself; do not leak its connection
			if r := <-ch; r.c != nil {
				closeRaw(r.c)
			}
		}()
		return nil, "", unavailable(ctx, h.uri, "connect")
	}
}

// connectionLost wakes the monitor if gen is the current connection.
func (h *Hypervisor) connectionLost(gen uint64) {
	h.mu.Lock()
	current := gen == h.gen && h.conn != nil
	h.mu.Unlock()
	if current {
		select {
		case h.lost <- struct{}{}:
		default:
		}
	}
}

// monitor replaces a broken connection. It reports EventDisconnected once per
// loss and EventReconnected, with the inventory, once a new connection
// answers. It starts by connecting if Open left the Hypervisor unconnected.
func (h *Hypervisor) monitor() {
	defer h.wg.Done()
	h.mu.Lock()
	connected := h.conn != nil
	h.mu.Unlock()
	for {
		if connected {
			select {
			case <-h.done:
				return
			case <-h.lost:
			}
			h.mu.Lock()
			old := h.conn
			h.conn = nil
			gen := h.gen
			h.mu.Unlock()
			if old == nil {
				continue
			}
			h.queue.Push(queued{gen: gen, kind: xenctl.EventDisconnected})
			go old.release()
		}
		if !h.reconnect() {
			return
		}
		connected = true
	}
}

// reconnect dials with backoff until a connection answers with an inventory,
// or the Hypervisor is closed (false).
func (h *Hypervisor) reconnect() bool {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-h.done:
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, h.maxBackoff)
		// Every dial gets a generation of its own: a failed or abandoned
		// dial's close and lifecycle callbacks must never pass for those of
		// a later connection.
		h.mu.Lock()
		h.dials++
		gen := h.dials
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(h.life, h.dialTimeout)
		c, driver, err := h.dial(ctx, gen)
		if err != nil {
			cancel()
			h.log.Debug("libvirt reconnect failed", "uri", h.uri, "err", err)
			continue
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			cancel()
			c.release()
			return false
		}
		h.conn, h.gen, h.driver = c, gen, driver
		h.mu.Unlock()
		inv, err := h.Domains(ctx)
		cancel()
		if err != nil {
			h.log.Debug("libvirt inventory after reconnect failed", "uri", h.uri, "err", err)
			h.mu.Lock()
			h.conn = nil
			h.mu.Unlock()
			go c.release()
			continue
		}
		h.log.Info("libvirt connected", "uri", h.uri, "domains", len(inv))
		h.queue.Push(queued{gen: gen, kind: xenctl.EventReconnected, inventory: inv})
		return true
	}
}

// do runs fn on its own goroutine with a reference to the current connection,
// and returns when fn does or ctx ends, whichever is first. When do returns an
// error, fn may still be running: callers must not read what fn writes.
func (h *Hypervisor) do(ctx context.Context, what string, fn func(c *libvirt.Connect) error) error {
	if ctx.Err() != nil {
		return unavailable(ctx, h.uri, what)
	}
	c, gen, err := h.acquire(what)
	if err != nil {
		return err
	}
	type result struct {
		err   error
		alive bool
	}
	ch := make(chan result, 1)
	go func() {
		defer c.release()
		err := fn(c.c)
		alive := true
		if err != nil {
			alive, _ = c.c.IsAlive()
		}
		ch <- result{err, alive}
	}()
	select {
	case r := <-ch:
		if r.err != nil && !r.alive {
			h.connectionLost(gen)
		}
		return wrapErr(h.uri, what, r.err, r.alive)
	case <-ctx.Done():
		h.log.Warn("libvirt call abandoned", "uri", h.uri, "call", what, "err", context.Cause(ctx))
		return unavailable(ctx, h.uri, what)
	}
}

// acquire returns a new reference to the current connection, which the
// caller must release, and its generation.
func (h *Hypervisor) acquire(what string) (*connRef, uint64, error) {
	h.mu.Lock()
	c, gen, closed := h.conn, h.gen, h.closed
	if c != nil && !c.acquire() {
		c = nil
	}
	h.mu.Unlock()
	switch {
	case closed:
		return nil, 0, fmt.Errorf("libvirt %s: %s: %w: connection closed", h.uri, what, xenctl.ErrUnavailable)
	case c == nil:
		return nil, 0, fmt.Errorf("libvirt %s: %s: %w: not connected; reconnecting", h.uri, what, xenctl.ErrUnavailable)
	}
	return c, gen, nil
}

// Driver returns the name of the connected driver, e.g. "QEMU", "Xen", "TEST".
func (h *Hypervisor) Driver() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.driver
}

// Close ends the connection and closes every event channel. The domains keep
// running.
func (h *Hypervisor) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	c := h.conn
	h.conn = nil
	for s := range h.subs {
		s.Close()
	}
	h.mu.Unlock()
	h.endLife()
	close(h.done)
	h.queue.Close()
	h.wg.Wait()
	if c != nil {
		// Closing a connection to a hung daemon can block; do not make the
		// caller wait for it.
		go c.release()
	}
	return nil
}

var (
	_ xenctl.Hypervisor = (*Hypervisor)(nil)
	_ xenctl.Migrator   = (*Hypervisor)(nil)
	_ xenctl.Watcher    = (*Hypervisor)(nil)
)
