package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The cluster RPC shares the Raft listener (stream byte 'C'). JSON requests
// and responses, one at a time per connection; callers keep a few idle
// connections per peer, because a TLS handshake costs more than a commit.
// The network layer (a partition, a crash) closes them like any other.

// rpcIdle is how long a server waits for the next request on a connection,
// and how many idle connections a caller keeps per peer.
const (
	rpcIdle    = 90 * time.Second
	rpcMaxIdle = 32
)

const (
	opJoin      = "join"
	opApply     = "apply"
	opReadIndex = "readindex"
	opRemove    = "remove"
	opPing      = "ping"   // answered by every member: the leader's probe
	opMember    = "member" // is ID in your configuration? (a vouch, authz.go)
)

// Size limits of one request and one answer on the wire: a request carries
// at most one command (a VM's domain XML, say), an answer a few fields.
const (
	maxRPCRequest  = 8 << 20
	maxRPCResponse = 1 << 20
)

type rpcRequest struct {
	Op        string `json:"op"`
	Token     string `json:"token,omitempty"`
	Host      *Host  `json:"host,omitempty"`
	Fresh     bool   `json:"fresh,omitempty"`
	Data      []byte `json:"data,omitempty"`
	ID        string `json:"id,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
}

type rpcResponse struct {
	Index  uint64 `json:"index,omitempty"`
	Member bool   `json:"member,omitempty"` // opMember's answer
	// Members is the configuration after a join: the joiner accepts Raft
	// traffic from them until its own configuration names it.
	Members []sponsor `json:"members,omitempty"`
	Leader  string    `json:"leader,omitempty"` // leader's address, with ErrNotLeader
	Code    int       `json:"code,omitempty"`
	Err     string    `json:"err,omitempty"`
}

func (req rpcRequest) timeout() time.Duration {
	if req.TimeoutMS <= 0 {
		return 30 * time.Second
	}
	return time.Duration(req.TimeoutMS) * time.Millisecond
}

// serveRPC answers requests on conn from peer (its certificate already
// checked to name peer) until the peer hangs up.
func (c *Cluster) serveRPC(conn net.Conn, peer peerID) {
	defer conn.Close()
	stop := context.AfterFunc(c.ctx, func() { conn.Close() })
	defer stop()
	lim := &limitReader{r: conn}
	dec, enc := json.NewDecoder(lim), json.NewEncoder(conn)
	for {
		_ = conn.SetDeadline(time.Now().Add(rpcIdle))
		var req rpcRequest
		lim.reset(maxRPCRequest)
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, errTooLarge) {
				c.log.Warn("refused an oversized cluster RPC request", "peer", peer, "limit", maxRPCRequest)
				_ = enc.Encode(rpcResponse{Code: errCode(ErrRefused), Err: fmt.Sprintf("ha: member %s: %v: %v", c.cfg.ID, ErrRefused, err)})
			}
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, req.timeout())
		// A peer that vanishes must not leave the handler waiting forever.
		_ = conn.SetDeadline(time.Now().Add(req.timeout() + time.Second))
		resp := c.handleRPC(ctx, peer, req)
		cancel()
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

func (c *Cluster) handleRPC(ctx context.Context, peer peerID, req rpcRequest) rpcResponse {
	fail := func(err error) rpcResponse {
		r := rpcResponse{Code: errCode(err), Err: err.Error()}
		if errors.Is(err, ErrNotLeader) {
			_, r.Leader = c.Leader()
		}
		return r
	}
	if err := c.authorizeRPC(peer, req); err != nil {
		c.log.Warn("refused a cluster RPC request", "peer", peer, "op", req.Op, "err", err)
		return fail(err)
	}
	switch req.Op {
	case opPing:
		return rpcResponse{}
	case opMember:
		return rpcResponse{Member: c.members.isMember(req.ID)}
	}
	if !c.isLeader() {
		return fail(fmt.Errorf("ha: member %s: %w", c.cfg.ID, ErrNotLeader))
	}
	switch req.Op {
	case opApply:
		index, err := c.applyForwarded(ctx, peer, req.Data)
		if err != nil {
			return fail(err)
		}
		return rpcResponse{Index: index}
	case opReadIndex:
		index, err := c.readIndexLocal(ctx)
		if err != nil {
			return fail(err)
		}
		return rpcResponse{Index: index}
	case opJoin:
		if req.Host == nil {
			return fail(fmt.Errorf("ha: join request without host"))
		}
		if req.Host.ID != peer.id {
			return fail(fmt.Errorf("%w: member %q asked to join as %q: a member joins under the ID its certificate names", ErrBadCertificate, peer, req.Host.ID))
		}
		if err := c.admit(ctx, req.Token, *req.Host, req.Fresh); err != nil {
			return fail(err)
		}
		var ms []sponsor
		if cfg, err := c.raftConfig(); err == nil {
			for _, s := range cfg.Servers {
				ms = append(ms, sponsor{ID: string(s.ID), Addr: string(s.Address)})
			}
		}
		return rpcResponse{Members: ms}
	case opRemove:
		if err := c.removeMember(ctx, req.ID); err != nil {
			return fail(err)
		}
		return rpcResponse{}
	default:
		return fail(fmt.Errorf("ha: unknown request %q from %s", req.Op, peer))
	}
}

// applyForwarded appends an encoded command on the leader. Unknown kinds,
// commands the peer may not propose and invalid ones are refused here, so
// they never reach the log.
func (c *Cluster) applyForwarded(ctx context.Context, peer peerID, data []byte) (uint64, error) {
	cmd, _, err := decodeCommand(data)
	if err != nil {
		return 0, fmt.Errorf("ha: leader %s refused a forwarded command: %w", c.cfg.ID, err)
	}
	// A member that forwarded to itself (it became leader meanwhile, or is
	// bootstrapping) is the leader's own path.
	self := !peer.operator && peer.id == c.cfg.ID
	if err := mayPropose(peer, cmd); err != nil && !self {
		c.log.Warn("refused a forwarded command", "peer", peer, "kind", cmd.kind(), "err", err)
		return 0, fmt.Errorf("ha: leader %s refused %s: %w", c.cfg.ID, cmd.kind(), err)
	}
	if err := validateCommand(cmd); err != nil {
		return 0, fmt.Errorf("ha: leader %s refused %s: %w", c.cfg.ID, cmd.kind(), err)
	}
	f := c.raft.Apply(data, timeoutOf(ctx))
	if err := f.Error(); err != nil {
		return 0, c.raftErr(err)
	}
	return f.Index(), nil
}

// raftErr maps Raft's errors on Apply to ours.
func (c *Cluster) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("ha: member %s: %w", c.cfg.ID, ErrNotLeader)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("ha: member %s lost leadership while committing: %w", c.cfg.ID, ErrIndeterminate)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("ha: member %s: %w", c.cfg.ID, ErrClosed)
	}
	return fmt.Errorf("ha: member %s: %w", c.cfg.ID, err)
}

// readIndexLocal is the leader's half of a consistent read: once a barrier
// commits (proving leadership to a quorum) everything acknowledged before
// the read is applied here, so the state's index is a safe read point.
func (c *Cluster) readIndexLocal(ctx context.Context) (uint64, error) {
	if err := c.barrier(ctx); err != nil {
		return 0, err
	}
	idx, halted := c.fsm.index()
	if halted != nil {
		return 0, halted
	}
	return idx, nil
}

// rpcConn is a pooled connection to a peer.
type rpcConn struct {
	net.Conn
	broken bool   // not to be reused
	peer   string // the member ID the peer's certificate names
	lim    *limitReader
	dec    *json.Decoder
	enc    *json.Encoder
}

// rpcPool keeps idle RPC connections per address.
type rpcPool struct {
	mu   sync.Mutex
	idle map[string][]*rpcConn
}

func (p *rpcPool) get(addr string) *rpcConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.idle[addr]
	if len(cs) == 0 {
		return nil
	}
	c := cs[len(cs)-1]
	p.idle[addr] = cs[:len(cs)-1]
	return c
}

func (p *rpcPool) put(addr string, c *rpcConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle == nil {
		p.idle = map[string][]*rpcConn{}
	}
	if c.broken || len(p.idle[addr]) >= rpcMaxIdle {
		c.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], c)
}

func (p *rpcPool) flush(addr string) {
	p.mu.Lock()
	cs := p.idle[addr]
	delete(p.idle, addr)
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (p *rpcPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cs := range p.idle {
		for _, c := range cs {
			c.Close()
		}
	}
	p.idle = nil
}

// call sends one request to the member at addr. When a pooled connection
// turns out dead, the pool for addr is flushed (its siblings died with it)
// and the request goes once more on a fresh connection; requests are safe to
// repeat (writes carry their request ID). An error wraps *notSentError when
// the request certainly never left this member.
func (c *Cluster) call(ctx context.Context, addr string, req rpcRequest) (rpcResponse, error) {
	req.TimeoutMS = timeoutOf(ctx).Milliseconds()
	maybeSent := false
	for {
		conn := c.rpcPool.get(addr)
		pooled := conn != nil
		if conn == nil {
			raw, peer, err := c.dialer.dial(ctx, addr, streamRPC, "")
			if err != nil {
				if maybeSent {
					return rpcResponse{}, err
				}
				return rpcResponse{}, &notSentError{err}
			}
			lim := &limitReader{r: raw}
			conn = &rpcConn{Conn: raw, peer: peer, lim: lim, dec: json.NewDecoder(lim), enc: json.NewEncoder(raw)}
		}
		if req.Op == opJoin {
			// The member that admits this one starts sending it Raft
			// entries before the answer comes.
			c.members.addSponsors(sponsor{ID: conn.peer, Addr: addr})
		}
		resp, wrote, err := c.roundTrip(ctx, conn, req)
		if err == nil {
			c.rpcPool.put(addr, conn)
			return resp, nil
		}
		conn.Close()
		maybeSent = maybeSent || wrote
		if pooled && ctx.Err() == nil {
			c.rpcPool.flush(addr)
			continue
		}
		err = fmt.Errorf("ha: %s with %s: %w", req.Op, addr, err)
		if !maybeSent {
			return rpcResponse{}, &notSentError{err}
		}
		return rpcResponse{}, err
	}
}

// roundTrip sends req and reads the answer; wrote reports whether the
// request was handed to the connection.
func (c *Cluster) roundTrip(ctx context.Context, conn *rpcConn, req rpcRequest) (resp rpcResponse, wrote bool, err error) {
	dl := time.Now().Add(timeoutOf(ctx) + time.Second)
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if err := conn.enc.Encode(req); err != nil {
		return resp, false, err
	}
	conn.lim.reset(maxRPCResponse)
	if err := conn.dec.Decode(&resp); err != nil {
		return resp, true, err
	}
	if !stop() {
		// ctx ended just as the answer came: the answer stands, but the
		// connection's deadline may be set, so it is not reused.
		conn.broken = true
	}
	return resp, true, nil
}

// callLeader sends req to the leader, following redirects and waiting out
// elections until ctx ends. sent reports whether a request may have reached
// a leader (so an error is indeterminate for writes).
func (c *Cluster) callLeader(ctx context.Context, req rpcRequest) (resp rpcResponse, sent bool, err error) {
	hint := ""
	backoff := 10 * time.Millisecond
	for {
		if c.ctx.Err() != nil {
			return resp, sent, ErrClosed
		}
		addr := hint
		hint = ""
		if addr == "" {
			_, addr = c.Leader()
		}
		var lastErr error
		if addr != "" {
			r, cerr := c.call(ctx, addr, req)
			switch {
			case cerr != nil:
				// A failure after the hello may or may not have reached Raft.
				var ns *notSentError
				if !errors.As(cerr, &ns) {
					sent = true
				}
				lastErr = cerr
			case r.Err != "" && r.Code == errCode(ErrNotLeader):
				hint = r.Leader
				lastErr = errFromWire(addr, r.Code, r.Err)
			case r.Err != "" && r.Code == errCode(ErrIndeterminate):
				sent = true
				lastErr = errFromWire(addr, r.Code, r.Err)
			default:
				return r, true, nil
			}
		}
		if hint != "" && hint != addr {
			continue
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = errors.New("no leader known")
			}
			return resp, sent, fmt.Errorf("ha: member %s: %w before the deadline (%w): %w", c.cfg.ID, ErrNoLeader, ctx.Err(), lastErr)
		case <-c.ctx.Done():
			return resp, sent, ErrClosed
		case <-time.After(backoff):
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

// notSentError marks a call that failed before the request left this member.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

var errTooLarge = errors.New("message exceeds the size limit")

// limitReader fails a read past n bytes since the last reset: one message's
// worth (the JSON decoder may read ahead into the next one, which the
// limit, far above a message, absorbs).
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) reset(n int64) { l.n = n }

func (l *limitReader) Read(b []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("%w", errTooLarge)
	}
	if int64(len(b)) > l.n {
		b = b[:l.n]
	}
	n, err := l.r.Read(b)
	l.n -= int64(n)
	return n, err
}
