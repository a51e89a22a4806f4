// Package powercut gives the examples' simulated hosts a power switch for
// their cluster traffic. Closing an ha.Cluster is an orderly shutdown that
// may take its time; a power cut is not: the host falls silent at once. A
// member whose ha.Config.Network is a *Network falls silent the moment Cut
// is called, whatever its goroutines are doing, and the orderly Close can
// follow in the background.
package powercut

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/xenha/xenha/ha"
)

// ErrPoweredOff is returned by Dial and Accept while the host is off.
var ErrPoweredOff = errors.New("powercut: host is powered off")

// Network is an ha.Network over TCP that can be cut.
type Network struct {
	base ha.Network

	mu    sync.Mutex
	off   bool
	lns   map[net.Listener]struct{}
	conns map[net.Conn]struct{}
}

// New returns a powered-on network over TCP.
func New() *Network {
	return &Network{base: ha.TCP{}, lns: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
}

// Cut closes every listener and connection and refuses new ones until
// Restore.
func (n *Network) Cut() {
	n.mu.Lock()
	n.off = true
	lns, conns := n.lns, n.conns
	n.lns, n.conns = map[net.Listener]struct{}{}, map[net.Conn]struct{}{}
	n.mu.Unlock()
	for ln := range lns {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}

// Restore powers the network on again (for the next member on this host).
func (n *Network) Restore() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.off = false
}

func (n *Network) track(c net.Conn) (net.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.off {
		c.Close()
		return nil, ErrPoweredOff
	}
	n.conns[c] = struct{}{}
	return &conn{Conn: c, n: n}, nil
}

// Listen listens on a TCP address.
func (n *Network) Listen(ctx context.Context, addr string) (net.Listener, error) {
	n.mu.Lock()
	off := n.off
	n.mu.Unlock()
	if off {
		return nil, ErrPoweredOff
	}
	ln, err := n.base.Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.off {
		ln.Close()
		return nil, ErrPoweredOff
	}
	n.lns[ln] = struct{}{}
	return &listener{Listener: ln, n: n}, nil
}

// Dial dials a TCP address.
func (n *Network) Dial(ctx context.Context, addr string) (net.Conn, error) {
	n.mu.Lock()
	off := n.off
	n.mu.Unlock()
	if off {
		return nil, ErrPoweredOff
	}
	c, err := n.base.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return n.track(c)
}

type listener struct {
	net.Listener
	n *Network
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.n.track(c)
}

func (l *listener) Close() error {
	l.n.mu.Lock()
	delete(l.n.lns, l.Listener)
	l.n.mu.Unlock()
	return l.Listener.Close()
}

type conn struct {
	net.Conn
	n *Network
}

func (c *conn) Close() error {
	c.n.mu.Lock()
	delete(c.n.conns, c.Conn)
	c.n.mu.Unlock()
	return c.Conn.Close()
}
