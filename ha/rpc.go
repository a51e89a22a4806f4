package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// The cluster RPC shares the Raft listener (stream byte 'C'). One request per
// connection, JSON both ways: members exchange few of these (joins,
// forwarded writes and read indexes), and a fresh connection per call keeps
// a partition from leaving half-used connections behind.

const (
	opJoin      = "join"
	opApply     = "apply"
	opReadIndex = "readindex"
	opRemove    = "remove"
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
	Leader string `json:"leader,omitempty"` // leader's address, with ErrNotLeader
	Code   int    `json:"code,omitempty"`
	Err    string `json:"err,omitempty"`
}

func (req rpcRequest) timeout() time.Duration {
	if req.TimeoutMS <= 0 {
		return 30 * time.Second
	}
	return time.Duration(req.TimeoutMS) * time.Millisecond
}

// serveRPC answers one request on conn from member peer (its certificate
// already checked to name peer).
func (c *Cluster) serveRPC(conn net.Conn, peer string) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(helloTimeout))
	var req rpcRequest
	if err := json.NewDecoder(conn).Decode(&req); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, req.timeout())
	defer cancel()
	// A peer that vanishes must not leave the handler waiting forever.
	_ = conn.SetDeadline(time.Now().Add(req.timeout() + time.Second))
	resp := c.handleRPC(ctx, peer, req)
	_ = json.NewEncoder(conn).Encode(resp)
}

func (c *Cluster) handleRPC(ctx context.Context, peer string, req rpcRequest) rpcResponse {
	fail := func(err error) rpcResponse {
		r := rpcResponse{Code: errCode(err), Err: err.Error()}
		if errors.Is(err, ErrNotLeader) {
			_, r.Leader = c.Leader()
		}
		return r
	}
	if !c.isLeader() {
		return fail(fmt.Errorf("ha: member %s: %w", c.cfg.ID, ErrNotLeader))
	}
	switch req.Op {
	case opApply:
		index, err := c.applyForwarded(ctx, req.Data)
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
		if c.dialer.sec != nil && req.Host.ID != peer {
			return fail(fmt.Errorf("%w: member %q asked to join as %q: a member joins under the ID its certificate names", ErrBadCertificate, peer, req.Host.ID))
		}
		if err := c.admit(ctx, req.Token, *req.Host, req.Fresh); err != nil {
			return fail(err)
		}
		return rpcResponse{}
	case opRemove:
		if err := c.removeMember(ctx, req.ID); err != nil {
			return fail(err)
		}
		return rpcResponse{}
	default:
		return fail(fmt.Errorf("ha: unknown request %q from %s", req.Op, peer))
	}
}

// applyForwarded appends an encoded command on the leader. Unknown kinds are
// refused here, so they never reach the log.
func (c *Cluster) applyForwarded(ctx context.Context, data []byte) (uint64, error) {
	if _, _, err := decodeCommand(data); err != nil {
		return 0, fmt.Errorf("ha: leader %s refused a forwarded command: %w", c.cfg.ID, err)
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

// call sends one request to the member at addr.
func (c *Cluster) call(ctx context.Context, addr string, req rpcRequest) (rpcResponse, error) {
	conn, _, err := c.dialer.dial(ctx, addr, streamRPC, "")
	if err != nil {
		return rpcResponse{}, err
	}
	defer conn.Close()
	req.TimeoutMS = timeoutOf(ctx).Milliseconds()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl.Add(time.Second))
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return rpcResponse{}, fmt.Errorf("ha: send %s to %s: %w", req.Op, addr, err)
	}
	var resp rpcResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return rpcResponse{}, fmt.Errorf("ha: %s reply from %s: %w", req.Op, addr, err)
	}
	return resp, nil
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
				sent = true
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
				lastErr = ErrNoLeader
			}
			return resp, sent, fmt.Errorf("ha: member %s: no leader answered before the deadline (%w): %w", c.cfg.ID, ctx.Err(), lastErr)
		case <-c.ctx.Done():
			return resp, sent, ErrClosed
		case <-time.After(backoff):
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}
