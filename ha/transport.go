package ha

import (
	"context"
	"fmt"
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

// guarded is the Raft transport as Raft sees it: no pipelining (above), and
// every request checked before Raft meets it. A request whose header names
// no member that may act here is answered with an error and dropped, and so
// is one carrying a configuration that does not decode: Raft decodes
// configurations with a panic on failure, and stores an entry before it
// decodes it, so one bad entry would crash the member at every restart.
type guarded struct {
	unpipelined
	out   chan raft.RPC
	check func(raft.RPC) error
}

func newGuarded(t *raft.NetworkTransport, check func(raft.RPC) error, done <-chan struct{}) *guarded {
	g := &guarded{unpipelined: unpipelined{t}, out: make(chan raft.RPC), check: check}
	go func() {
		in := t.Consumer()
		for {
			select {
			case <-done:
				return
			case rpc := <-in:
				if err := g.check(rpc); err != nil {
					rpc.Respond(nil, err)
					continue
				}
				select {
				case g.out <- rpc:
				case <-done:
					rpc.Respond(nil, raft.ErrTransportShutdown)
					return
				}
			}
		}
	}()
	return g
}

// Consumer yields the requests that passed the check.
func (g *guarded) Consumer() <-chan raft.RPC { return g.out }

// SetHeartbeatHandler checks heartbeats too: they bypass the consumer, and
// one at a high term from anyone would otherwise depose the leader.
func (g *guarded) SetHeartbeatHandler(fn func(raft.RPC)) {
	if fn == nil {
		g.unpipelined.SetHeartbeatHandler(nil)
		return
	}
	g.unpipelined.SetHeartbeatHandler(func(rpc raft.RPC) {
		if err := g.check(rpc); err != nil {
			rpc.Respond(nil, err)
			return
		}
		fn(rpc)
	})
}

// decodeConfiguration decodes a Raft configuration without Raft's panic.
func decodeConfiguration(data []byte) (cfg raft.Configuration, err error) {
	if len(data) > maxConfigurationSize {
		return cfg, fmt.Errorf("configuration of %d bytes exceeds %d", len(data), maxConfigurationSize)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	cfg = raft.DecodeConfiguration(data)
	for _, s := range cfg.Servers {
		if s.ID == "" || s.Address == "" {
			return cfg, fmt.Errorf("server without ID or address")
		}
		if s.Suffrage != raft.Voter && s.Suffrage != raft.Nonvoter && s.Suffrage != raft.Staging {
			return cfg, fmt.Errorf("server %s has unknown suffrage %d", s.ID, s.Suffrage)
		}
	}
	return cfg, nil
}

// maxConfigurationSize bounds an encoded configuration: a few hundred
// members of a few hundred bytes each.
const maxConfigurationSize = 1 << 20

// checkEntries refuses log entries Raft could not process: configurations
// that do not decode, and the pre-v1 peer-change entries xenha never writes.
func checkEntries(entries []*raft.Log) error {
	for _, e := range entries {
		switch e.Type {
		case raft.LogConfiguration:
			if _, err := decodeConfiguration(e.Data); err != nil {
				return fmt.Errorf("log entry %d: Raft configuration does not decode: %v", e.Index, err)
			}
		case raft.LogAddPeerDeprecated, raft.LogRemovePeerDeprecated:
			return fmt.Errorf("log entry %d: legacy peer change (type %d), which xenha never writes", e.Index, e.Type)
		}
	}
	return nil
}
