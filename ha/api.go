package ha

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ReadMode says how fresh a read must be.
type ReadMode int

// Read modes.
const (
	// Consistent reads reflect every write acknowledged before the read
	// began (linearizable): the leader proves its leadership with a barrier,
	// and this member waits until it has applied up to the leader's index.
	Consistent ReadMode = iota
	// Stale reads return this member's state at once; it may lag the leader
	// or, while partitioned, be arbitrarily old.
	Stale
)

// State returns a copy of the replicated state, read as mode says.
func (c *Cluster) State(ctx context.Context, mode ReadMode) (*State, error) {
	if mode == Consistent {
		if err := c.syncRead(ctx); err != nil {
			return nil, err
		}
	}
	return c.fsm.clone()
}

// syncRead waits until this member's state is at least as new as the
// leader's at the time of the call.
func (c *Cluster) syncRead(ctx context.Context) error {
	for {
		var index uint64
		var err error
		if c.isLeader() {
			index, err = c.readIndexLocal(ctx)
		} else {
			var resp rpcResponse
			resp, _, err = c.callLeader(ctx, rpcRequest{Op: opReadIndex})
			if err == nil && resp.Err != "" {
				// Never read at index 0: a failed read index is a failed read.
				err = errFromWire("leader", resp.Code, resp.Err)
			}
			index = resp.Index
		}
		if errors.Is(err, ErrNotLeader) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
			continue // leadership moved between the check and the barrier
		}
		if err != nil {
			return fmt.Errorf("ha: consistent read on %s: %w", c.cfg.ID, err)
		}
		if err := c.fsm.waitIndex(ctx, index); err != nil {
			return fmt.Errorf("ha: consistent read on %s: wait for index %d: %w", c.cfg.ID, index, err)
		}
		return nil
	}
}

// propose commits cmd through the leader and returns apply's result or
// refusal. It forwards from followers, waits out elections and retries with
// the same request ID (applied at most once) until ctx ends; if by then the
// command may have been appended, the error wraps ErrIndeterminate.
// On success this member has applied the command (read-your-writes).
func (c *Cluster) propose(ctx context.Context, cmd command) (any, error) {
	if err := validateCommand(cmd); err != nil {
		return nil, fmt.Errorf("ha: %s from %s: %w", cmd.kind(), c.cfg.ID, err)
	}
	reqID := newRequestID()
	data, err := encodeCommand(cmd, reqID, time.Now())
	if err != nil {
		return nil, err
	}
	return c.proposeData(ctx, cmd.kind(), reqID, data)
}

func (c *Cluster) proposeData(ctx context.Context, kind, reqID string, data []byte) (any, error) {
	sent := false
	indeterminate := func(cause error) error {
		if sent {
			return fmt.Errorf("ha: %s from %s: %w (%w)", kind, c.cfg.ID, ErrIndeterminate, cause)
		}
		return fmt.Errorf("ha: %s from %s: %w", kind, c.cfg.ID, cause)
	}
	for {
		if c.ctx.Err() != nil {
			return nil, indeterminate(ErrClosed)
		}
		if ctx.Err() != nil {
			return nil, indeterminate(fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err()))
		}
		if c.isLeader() {
			f := c.raft.Apply(data, timeoutOf(ctx))
			errc := make(chan error, 1)
			go func() { errc <- f.Error() }()
			var err error
			select {
			case err = <-errc:
			case <-ctx.Done():
				// Appended, maybe committed later: the caller cannot know.
				sent = true
				return nil, indeterminate(ctx.Err())
			}
			if err == nil {
				r, _ := f.Response().(applyResult)
				return r.result, r.err
			}
			err = c.raftErr(err)
			switch {
			case errors.Is(err, ErrIndeterminate):
				sent = true
			case errors.Is(err, ErrNotLeader):
			default:
				return nil, indeterminate(err)
			}
			c.pause(ctx)
			continue
		}
		resp, s, err := c.callLeader(ctx, rpcRequest{Op: opApply, Data: data})
		sent = sent || s
		if err != nil {
			// callLeader gives up only when ctx ends or the member closes.
			return nil, indeterminate(err)
		}
		if resp.Err != "" {
			// Refused before the log (an unknown kind, a closing leader).
			return nil, errFromWire("leader", resp.Code, resp.Err)
		}
		if err := c.fsm.waitIndex(ctx, resp.Index); err != nil {
			sent = true
			if serr, since := c.store.failing(); serr != nil {
				// Committed, but its verdict is known only once this
				// member applies it, which it cannot.
				err = fmt.Errorf("%w; committed at index %d, but this member cannot apply it: writing its Raft log has failed since %s: %w",
					err, resp.Index, since.Format(time.RFC3339), serr)
			}
			return nil, indeterminate(err)
		}
		if r, ok := c.fsm.result(reqID); ok {
			return r.result, r.err
		}
		return nil, nil
	}
}

func (c *Cluster) pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-c.ctx.Done():
	case <-time.After(20 * time.Millisecond):
	}
}

// Snapshot makes this member snapshot its state now and compact its log
// (Raft does so on its own every SnapshotInterval past SnapshotThreshold
// entries).
func (c *Cluster) Snapshot(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- c.raft.Snapshot().Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("ha: snapshot on %s: %w", c.cfg.ID, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ha: snapshot on %s: %w", c.cfg.ID, ctx.Err())
	}
}
