package ha

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is Raft's side of the shared listener: Accept yields the
// connections the mux routed to Raft, Dial opens a hello'd connection.
type streamLayer struct {
	mux    *mux
	dialer *dialer
	addr   net.Addr
	// idOf maps a Raft address to the member ID expected there, from the
	// latest Raft configuration, so the peer's certificate is checked
	// against the right name.
	idOf func(raft.ServerAddress) string

	closeOnce sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.mux.raftConns:
		return c, nil
	case <-s.mux.closed:
		return nil, net.ErrClosed
	}
}

// Close stops the shared listener (Raft's transport closes it on shutdown).
func (s *streamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.mux.closed)
		err = s.mux.ln.Close()
	})
	return err
}

func (s *streamLayer) Addr() net.Addr { return s.addr }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	expect := ""
	if s.idOf != nil {
		expect = s.idOf(address)
	}
	conn, _, err := s.dialer.dial(ctx, string(address), streamRaft, expect)
	return conn, err
}

// advertised is a net.Addr for the advertised address.
type advertised string

func (a advertised) Network() string { return "tcp" }
func (a advertised) String() string  { return string(a) }

// unpipelined is the Raft transport without pipelined replication. In raft
// v1.7.3 a follower that refuses an append (its disk is full, its log store
// failed once) while the pipeline is full leaves the leader's replication to
// it blocked for good: heartbeats still flow, so no election heals it, and
// the follower never receives another entry (hashicorp/raft#612;
// TestFullDiskLosesNothing met it). Without a pipeline, raft sends one
// append at a time and retries refusals with backoff.
type unpipelined struct{ *raft.NetworkTransport }

func (unpipelined) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
