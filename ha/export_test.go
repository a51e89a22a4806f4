package ha

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Hooks for the external tests (package ha_test), which can use hatest.

// RawApply appends data to the log as is (leader only), bypassing the
// leader's check of forwarded commands: it stands for a newer member's entry.
func RawApply(c *Cluster, data []byte) error {
	return c.raft.Apply(data, 5*time.Second).Error()
}

// ProposeDeleteVM proposes vm.delete under a chosen request ID, as a retry
// of a forwarded write would.
func ProposeDeleteVM(ctx context.Context, c *Cluster, name, requestID string) error {
	data, err := encodeCommand(&vmDelete{Name: name}, requestID, time.Now())
	if err != nil {
		return err
	}
	_, err = c.proposeData(ctx, "vm.delete", requestID, data)
	return err
}

// Attacker speaks the member protocol by hand with a certificate of its
// choosing (the security tests).
type Attacker struct {
	d *dialer
}

// NewAttacker returns a peer that says it is from, presenting tc (nil:
// plaintext).
func NewAttacker(tc *TLSConfig, clusterID, from string) *Attacker {
	var sec *security
	if tc != nil {
		sec = &security{ca: tc.CA, cert: tc.Cert, verify: tc.VerifyPeer}
	}
	return &Attacker{d: &dialer{net: TCP{}, sec: sec, clusterID: clusterID, self: from}}
}

// Call sends one cluster RPC request on a fresh connection. It returns the
// refusal the member answered with as an error, or the connection's error.
func (a *Attacker) Call(ctx context.Context, addr, op string, data []byte, id string) (uint64, error) {
	conn, _, err := a.d.dial(ctx, addr, streamRPC, "")
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(conn).Encode(rpcRequest{Op: op, Data: data, ID: id, TimeoutMS: 5000}); err != nil {
		return 0, err
	}
	var resp rpcResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return 0, err
	}
	if resp.Err != "" {
		return 0, errFromWire(addr, resp.Code, resp.Err)
	}
	return resp.Index, nil
}

// RawRPC writes raw bytes after the hello of a cluster RPC stream and
// returns what the member answers until it hangs up.
func (a *Attacker) RawRPC(ctx context.Context, addr string, raw []byte) ([]byte, error) {
	conn, _, err := a.d.dial(ctx, addr, streamRPC, "")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// Generous: the member's decoder reads up to its limit first, which
	// under the race detector on a loaded machine takes a while.
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
	go func() { _, _ = conn.Write(raw) }()
	return io.ReadAll(conn)
}

// Raft is a Raft transport that dials as the attacker.
func (a *Attacker) Raft() *raft.NetworkTransport {
	s := &attackStream{d: a.d, closed: make(chan struct{})}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: s, MaxPool: 1, Timeout: 5 * time.Second})
}

type attackStream struct {
	d      *dialer
	closed chan struct{}
	once   sync.Once
}

func (s *attackStream) Accept() (net.Conn, error) { <-s.closed; return nil, net.ErrClosed }
func (s *attackStream) Close() error              { s.once.Do(func() { close(s.closed) }); return nil }
func (s *attackStream) Addr() net.Addr            { return advertised("attacker:0") }
func (s *attackStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, _, err := s.d.dial(ctx, string(addr), streamRaft, "")
	return conn, err
}

// EncodeCommand encodes a command of a registered kind from its JSON body,
// as a member would forward it.
func EncodeCommand(kind string, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{V: envelopeVersion, Kind: kind, RequestID: newRequestID(), At: time.Now().UTC(), Body: b})
}

// Halted returns the error this member halted with, if any.
func Halted(c *Cluster) error {
	_, err := c.fsm.index()
	return err
}

// Term is the member's current Raft term.
func Term(c *Cluster) uint64 { return c.raft.CurrentTerm() }

// Call sends one cluster RPC request from member c to addr, as a member's
// own calls go (pooled connections, the dialer's checks).
func Call(ctx context.Context, c *Cluster, addr, op string) error {
	resp, err := c.call(ctx, addr, rpcRequest{Op: op})
	if err == nil && resp.Err != "" {
		err = errFromWire(addr, resp.Code, resp.Err)
	}
	return err
}

// WithSlowSync makes every write to the member's Raft log take the extra
// time delay returns first, as a disk whose fsync stalls now and then would.
func WithSlowSync(delay func() time.Duration) Option {
	return func(o *options) {
		o.wrapLogs = func(l raft.LogStore) raft.LogStore { return &slowLogs{LogStore: l, delay: delay} }
	}
}

type slowLogs struct {
	raft.LogStore
	delay func() time.Duration
}

func (s *slowLogs) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *slowLogs) StoreLogs(ls []*raft.Log) error {
	if d := s.delay(); d > 0 {
		time.Sleep(d)
	}
	return s.LogStore.StoreLogs(ls)
}
