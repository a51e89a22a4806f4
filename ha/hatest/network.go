package hatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/xenha/xenha/ha"
)

// Fabric connects a test's members: over TCP on loopback or over in-memory
// pipes, and either way able to partition them. Every dial between members
// goes through it, so a partition cuts Raft and the cluster RPC alike: new
// dials across groups fail and open connections across groups are closed.
type Fabric struct {
	mem bool

	mu        sync.Mutex
	owner     map[string]string // address → member ID
	group     map[string]int    // member ID → partition group; absent = group 0
	down      map[string]bool   // crashed members: no dials in or out
	conns     map[*fabricConn]struct{}
	listeners map[string]*memListener
}

// NewFabric returns a fabric; mem selects in-memory pipes instead of TCP.
func NewFabric(mem bool) *Fabric {
	return &Fabric{
		mem:       mem,
		owner:     map[string]string{},
		group:     map[string]int{},
		down:      map[string]bool{},
		conns:     map[*fabricConn]struct{}{},
		listeners: map[string]*memListener{},
	}
}

// ErrPartitioned is returned for dials the fabric blocks.
var ErrPartitioned = errors.New("hatest: partitioned")

// For returns the ha.Network member id uses.
func (f *Fabric) For(id string) ha.Network { return &endpoint{f: f, id: id} }

// Partition splits the members into groups; members named in no group form
// one more group together. It replaces any earlier partition.
func (f *Fabric) Partition(groups ...[]string) {
	f.mu.Lock()
	f.group = map[string]int{}
	for i, g := range groups {
		for _, id := range g {
			f.group[id] = i + 1
		}
	}
	f.cutLocked()
	f.mu.Unlock()
}

// Heal removes any partition.
func (f *Fabric) Heal() {
	f.mu.Lock()
	f.group = map[string]int{}
	f.mu.Unlock()
}

// setDown isolates a crashed member (or restores it).
func (f *Fabric) setDown(id string, down bool) {
	f.mu.Lock()
	f.down[id] = down
	f.cutLocked()
	f.mu.Unlock()
}

func (f *Fabric) allowedLocked(a, b string) bool {
	return !f.down[a] && !f.down[b] && f.group[a] == f.group[b]
}

// cutLocked closes open connections the current partition forbids.
func (f *Fabric) cutLocked() {
	for c := range f.conns {
		if !f.allowedLocked(c.from, c.to) {
			c.Conn.Close()
			delete(f.conns, c)
		}
	}
}

type endpoint struct {
	f  *Fabric
	id string
}

func (e *endpoint) Listen(ctx context.Context, addr string) (net.Listener, error) {
	f := e.f
	var ln net.Listener
	if f.mem {
		f.mu.Lock()
		if old, ok := f.listeners[addr]; ok && !old.isClosed() {
			f.mu.Unlock()
			return nil, fmt.Errorf("hatest: listen %s: address in use", addr)
		}
		ml := &memListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
		f.listeners[addr] = ml
		f.mu.Unlock()
		ln = ml
	} else {
		var err error
		ln, err = ha.TCP{}.Listen(ctx, addr)
		if err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	f.owner[ln.Addr().String()] = e.id
	f.mu.Unlock()
	return ln, nil
}

func (e *endpoint) Dial(ctx context.Context, addr string) (net.Conn, error) {
	f := e.f
	f.mu.Lock()
	to := f.owner[addr]
	if !f.allowedLocked(e.id, to) {
		f.mu.Unlock()
		return nil, fmt.Errorf("hatest: %s cannot reach %s (%s): %w", e.id, to, addr, ErrPartitioned)
	}
	ml := f.listeners[addr]
	f.mu.Unlock()

	var conn net.Conn
	if f.mem {
		if ml == nil {
			return nil, fmt.Errorf("hatest: dial %s: connection refused", addr)
		}
		a, b := newPipe(addr)
		select {
		case ml.ch <- b:
		case <-ml.done:
			return nil, fmt.Errorf("hatest: dial %s: connection refused", addr)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		conn = a
	} else {
		var err error
		conn, err = ha.TCP{}.Dial(ctx, addr)
		if err != nil {
			return nil, err
		}
	}
	fc := &fabricConn{Conn: conn, f: f, from: e.id, to: to}
	f.mu.Lock()
	if !f.allowedLocked(e.id, to) {
		f.mu.Unlock()
		conn.Close()
		return nil, fmt.Errorf("hatest: %s cannot reach %s: %w", e.id, to, ErrPartitioned)
	}
	f.conns[fc] = struct{}{}
	f.mu.Unlock()
	return fc, nil
}

type fabricConn struct {
	net.Conn
	f        *Fabric
	from, to string
}

func (c *fabricConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}

// memListener accepts in-memory connections.
type memListener struct {
	addr string
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *memListener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *memListener) Addr() net.Addr { return memAddr(l.addr) }

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// pipe is a buffered in-memory connection: unlike net.Pipe, a write does not
// wait for the reader, so protocols where both sides write at once (TLS 1.3
// session tickets, pipelined Raft) behave as over TCP.
type pipeHalf struct {
	mu       sync.Mutex
	cond     *sync.Cond
	buf      []byte
	closed   bool
	deadline time.Time
	timer    *time.Timer
}

func newHalf() *pipeHalf {
	h := &pipeHalf{}
	h.cond = sync.NewCond(&h.mu)
	return h
}

type pipeConn struct {
	r, w       *pipeHalf
	local, rem net.Addr
	wdeadline  time.Time
	wmu        sync.Mutex
}

func newPipe(addr string) (net.Conn, net.Conn) {
	ab, ba := newHalf(), newHalf()
	a := &pipeConn{r: ba, w: ab, local: memAddr("client"), rem: memAddr(addr)}
	b := &pipeConn{r: ab, w: ba, local: memAddr(addr), rem: memAddr("client")}
	return a, b
}

func (c *pipeConn) Read(p []byte) (int, error) {
	h := c.r
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.buf) == 0 {
		if h.closed {
			return 0, io.EOF
		}
		if !h.deadline.IsZero() && !time.Now().Before(h.deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		h.cond.Wait()
	}
	n := copy(p, h.buf)
	h.buf = h.buf[n:]
	return n, nil
}

func (c *pipeConn) Write(p []byte) (int, error) {
	h := c.w
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, net.ErrClosed
	}
	c.wmu.Lock()
	dl := c.wdeadline
	c.wmu.Unlock()
	if !dl.IsZero() && !time.Now().Before(dl) {
		return 0, os.ErrDeadlineExceeded
	}
	h.buf = append(h.buf, p...)
	h.cond.Broadcast()
	return len(p), nil
}

func (c *pipeConn) Close() error {
	for _, h := range []*pipeHalf{c.r, c.w} {
		h.mu.Lock()
		h.closed = true
		h.cond.Broadcast()
		h.mu.Unlock()
	}
	return nil
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.rem }

func (c *pipeConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *pipeConn) SetReadDeadline(t time.Time) error {
	h := c.r
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deadline = t
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	if !t.IsZero() {
		h.timer = time.AfterFunc(time.Until(t), func() {
			h.mu.Lock()
			h.cond.Broadcast()
			h.mu.Unlock()
		})
	}
	h.cond.Broadcast()
	return nil
}

func (c *pipeConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	c.wdeadline = t
	c.wmu.Unlock()
	return nil
}
