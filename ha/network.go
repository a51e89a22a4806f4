package ha

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Network is how a member listens and dials. The default is TCP; hatest
// substitutes an in-memory or partitionable network. Both Raft and the
// cluster RPC go through it, so cutting it cuts both.
type Network interface {
	Listen(ctx context.Context, addr string) (net.Listener, error)
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// TCP is the default Network.
type TCP struct{}

// Listen listens on a TCP address.
func (TCP) Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", addr)
}

// Dial dials a TCP address.
func (TCP) Dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// Every connection between members starts, after TLS, with a hello: one byte
// selecting the stream (Raft or cluster RPC), then the cluster ID and the
// dialer's member ID. The listener answers with a status byte, its own member
// ID and, on refusal, a message. So a peer of another cluster, or one whose
// certificate does not name the ID it claims, is turned away before it can
// say anything to Raft.
const (
	streamRaft byte = 'R'
	streamRPC  byte = 'C'

	helloOK      byte = 0
	helloRefused byte = 1

	helloTimeout = 10 * time.Second
)

type hello struct {
	stream    byte
	clusterID string
	from      string
}

func writeStrings(w io.Writer, first byte, ss ...string) error {
	buf := []byte{first}
	for _, s := range ss {
		if len(s) > 0xffff {
			return fmt.Errorf("ha: hello field too long")
		}
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(s)))
		buf = append(buf, s...)
	}
	_, err := w.Write(buf)
	return err
}

func readStrings(r io.Reader, n int) (byte, []string, error) {
	var first [1]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return 0, nil, err
	}
	out := make([]string, n)
	for i := range out {
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, err
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(r, b); err != nil {
			return 0, nil, err
		}
		out[i] = string(b)
	}
	return first[0], out, nil
}

// security is a member's TLS set-up, or nil for plaintext.
type security struct {
	ca     *x509.CertPool
	cert   tls.Certificate
	verify func(*x509.Certificate) error // TLSConfig.VerifyPeer
}

// verifyChain checks that the peer's certificate chains to the cluster CA.
// Go's name check is not used: members are named by ID, checked after the
// hello (checkName), and a dialer does not always know whom it reaches.
func (s *security) verifyChain(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: peer sent no certificate", ErrBadCertificate)
	}
	opts := x509.VerifyOptions{
		Roots:         s.ca,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("%w: not signed by the cluster CA: %v", ErrBadCertificate, err)
	}
	if s.verify != nil {
		if err := s.verify(leaf); err != nil {
			return fmt.Errorf("%w: certificate %q (serial %s) refused: %v", ErrBadCertificate, leaf.Subject.CommonName, leaf.SerialNumber.Text(16), err)
		}
	}
	return nil
}

// identify names the peer after the hello: its member ID, checked against
// its certificate, or for an operator certificate (IsOperatorCert) the
// certificate's common name, which the hello must repeat.
func (s *security) identify(conn net.Conn, from string) (peerID, error) {
	if s == nil {
		return peerID{id: from}, nil
	}
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return peerID{}, fmt.Errorf("%w: connection is not TLS", ErrBadCertificate)
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return peerID{}, fmt.Errorf("%w: peer sent no certificate", ErrBadCertificate)
	}
	leaf := cs.PeerCertificates[0]
	if IsOperatorCert(leaf) {
		if leaf.Subject.CommonName == "" || from != leaf.Subject.CommonName {
			return peerID{}, fmt.Errorf("%w: operator certificate names %q, and the peer said it is %q", ErrBadCertificate, leaf.Subject.CommonName, from)
		}
		return peerID{id: from, operator: true}, nil
	}
	if err := leaf.VerifyHostname(from); err != nil {
		return peerID{}, fmt.Errorf("%w: certificate names %v, not member %q: issue the member a certificate for its ID (ha/pki)", ErrBadCertificate, leaf.DNSNames, from)
	}
	return peerID{id: from}, nil
}

// checkPeerName checks that the verified peer certificate is a member
// certificate naming member id.
func (s *security) checkPeerName(conn net.Conn, id string) error {
	p, err := s.identify(conn, id)
	if err == nil && p.operator {
		err = fmt.Errorf("%w: %s answered as member %q with an operator certificate", ErrBadCertificate, conn.RemoteAddr(), id)
	}
	return err
}

func (s *security) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{s.cert},
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: s.verifyChain,
	}
}

func (s *security) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{s.cert},
		InsecureSkipVerify: true, // the chain is verified in VerifyConnection, the name after the hello
		VerifyConnection:   s.verifyChain,
	}
}

// dialer opens member-to-member connections: TLS, hello, checks.
type dialer struct {
	net       Network
	sec       *security
	clusterID string
	self      string
}

// dial connects to addr for stream and returns the connection and the peer's
// member ID. expect, if set, is the member ID the caller believes lives at
// addr.
func (d *dialer) dial(ctx context.Context, addr string, stream byte, expect string) (net.Conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	raw, err := d.net.Dial(ctx, addr)
	if err != nil {
		return nil, "", fmt.Errorf("ha: dial %s: %w", addr, err)
	}
	conn := raw
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if d.sec != nil {
		tc := tls.Client(raw, d.sec.clientConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			if errors.Is(err, ErrBadCertificate) {
				return nil, "", fmt.Errorf("ha: TLS with %s: %w", addr, err)
			}
			return nil, "", fmt.Errorf("ha: TLS with %s: %w: %v", addr, ErrBadCertificate, err)
		}
		conn = tc
	}
	fail := func(err error) (net.Conn, string, error) {
		conn.Close()
		return nil, "", err
	}
	if err := writeStrings(conn, stream, d.clusterID, d.self); err != nil {
		return fail(fmt.Errorf("ha: hello to %s: %w", addr, err))
	}
	status, fields, err := readStrings(conn, 3)
	if err != nil {
		if d.sec != nil {
			// TLS 1.3 reports a refused client certificate only on first read.
			return fail(fmt.Errorf("ha: hello from %s: %w: %v", addr, ErrBadCertificate, err))
		}
		return fail(fmt.Errorf("ha: hello from %s: %w", addr, err))
	}
	peer, code, msg := fields[0], fields[1], fields[2]
	if status != helloOK {
		var c int
		fmt.Sscan(code, &c)
		return fail(errFromWire(addr, c, msg))
	}
	if expect != "" && peer != expect {
		return fail(fmt.Errorf("ha: %s answered as member %q, expected %q", addr, peer, expect))
	}
	if err := d.sec.checkPeerName(conn, peer); err != nil {
		return fail(fmt.Errorf("ha: %s: %w", addr, err))
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, peer, nil
}

// mux accepts member connections on one listener and routes each, after the
// hello, to Raft's stream layer or to the cluster RPC handler.
type mux struct {
	ln        net.Listener
	sec       *security
	clusterID string
	self      string
	raftConns chan net.Conn
	rpc       func(conn net.Conn, peer peerID)
	// admit authorizes a peer for a stream after the hello; mayStay is
	// asked before every read of a Raft stream whether the peer still may
	// speak (a removed member's connection is cut at its next request).
	admit   func(p peerID, stream byte) error
	mayStay func(id string) bool
	log     func(msg string, args ...any)
	closed  chan struct{}
}

func (m *mux) serve() {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log("accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go m.handle(conn)
	}
}

func (m *mux) handle(raw net.Conn) {
	_ = raw.SetDeadline(time.Now().Add(helloTimeout))
	conn := raw
	if m.sec != nil {
		// A plaintext peer's hello starts with a stream byte, a TLS one with
		// a handshake record (22): tell the former why it is refused.
		var first [1]byte
		if _, err := io.ReadFull(raw, first[:]); err != nil {
			raw.Close()
			return
		}
		raw = &prefixConn{Conn: raw, prefix: first[:]}
		if first[0] == streamRaft || first[0] == streamRPC {
			err := fmt.Errorf("%w: member %s requires mutual TLS, and the peer connected in plaintext: give it a TLS config (ha/pki) instead of Insecure", ErrBadCertificate, m.self)
			m.log("refused plaintext connection", "remote", raw.RemoteAddr())
			_, _, _ = readStrings(raw, 2)
			_ = writeStrings(raw, helloRefused, m.self, fmt.Sprint(errCode(err)), err.Error())
			raw.Close()
			return
		}
		tc := tls.Server(raw, m.sec.serverConfig())
		if err := tc.Handshake(); err != nil {
			m.log("refused connection: TLS handshake failed", "remote", raw.RemoteAddr(), "err", err)
			raw.Close()
			return
		}
		conn = tc
	}
	stream, fields, err := readStrings(conn, 2)
	if err != nil {
		conn.Close()
		return
	}
	cluster, from := fields[0], fields[1]
	refuse := func(err error) {
		m.log("refused connection", "from", from, "remote", raw.RemoteAddr(), "err", err)
		_ = writeStrings(conn, helloRefused, m.self, fmt.Sprint(errCode(err)), err.Error())
		conn.Close()
	}
	switch {
	case cluster != m.clusterID:
		refuse(fmt.Errorf("%w: member %q of cluster %q tried to reach member %q of cluster %q: check ClusterID",
			ErrWrongCluster, from, cluster, m.self, m.clusterID))
		return
	case stream != streamRaft && stream != streamRPC:
		if m.sec == nil && stream == 22 {
			m.log("refused TLS connection: this member runs Insecure", "remote", raw.RemoteAddr())
			conn.Close()
			return
		}
		refuse(fmt.Errorf("ha: unknown stream type %q", stream))
		return
	}
	p, err := m.sec.identify(conn, from)
	if err != nil {
		refuse(err)
		return
	}
	if err := m.admit(p, stream); err != nil {
		refuse(err)
		return
	}
	if err := writeStrings(conn, helloOK, m.self, "0", ""); err != nil {
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	if stream == streamRPC {
		m.rpc(conn, p)
		return
	}
	conn = &memberConn{Conn: conn, peer: p.id, mayStay: m.mayStay, log: m.log}
	select {
	case m.raftConns <- conn:
	case <-m.closed:
		conn.Close()
	}
}

// prefixConn gives back bytes already read from a connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// memberConn is an accepted Raft stream whose peer is asked about before
// every read: once it is no longer a member, the connection is closed and
// what it sent is dropped unread by Raft.
type memberConn struct {
	net.Conn
	peer    string
	mayStay func(id string) bool
	log     func(msg string, args ...any)
}

func (c *memberConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.mayStay != nil && !c.mayStay(c.peer) {
		c.log("closed the Raft stream of a peer that is no longer a member", "peer", c.peer)
		c.Conn.Close()
		return 0, fmt.Errorf("%w: %s is no longer a member", ErrNotAuthorized, c.peer)
	}
	return n, err
}
