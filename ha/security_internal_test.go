package ha

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The inner layers of the Raft guard, each on its own (the suite in
// security_test.go meets the outer one, the hello, first).

func guardedMember() *Cluster {
	c := &Cluster{cfg: Config{ID: "h1"}, fsm: newFSM("c1", nil, nil), log: slog.New(slog.DiscardHandler), members: memberView{self: "h1"}}
	c.members.set(raft.Configuration{Servers: []raft.Server{{ID: "h1", Address: "a"}, {ID: "h2", Address: "b"}}})
	return c
}

func TestSecurityRaftRequestFromNonMemberIsDropped(t *testing.T) {
	c := guardedMember()
	from := func(id string) raft.RPCHeader { return raft.RPCHeader{ID: []byte(id)} }
	for _, cmd := range []any{
		&raft.AppendEntriesRequest{RPCHeader: from("h9"), Term: 100},
		&raft.RequestVoteRequest{RPCHeader: from("h9"), Term: 100},
		&raft.RequestPreVoteRequest{RPCHeader: from("h9"), Term: 100},
		&raft.TimeoutNowRequest{RPCHeader: from("h9")},
		&raft.InstallSnapshotRequest{RPCHeader: from("h9"), SnapshotVersion: 1},
		&raft.AppendEntriesRequest{Term: 100}, // no header at all
	} {
		if err := c.checkRaftRPC(raft.RPC{Command: cmd}); !errors.Is(err, ErrNotAuthorized) {
			t.Errorf("%T from a non-member: got %v, want ErrNotAuthorized", cmd, err)
		}
	}
	if err := c.checkRaftRPC(raft.RPC{Command: &raft.AppendEntriesRequest{RPCHeader: from("h2"), Term: 100}}); err != nil {
		t.Fatalf("a member's append: %v", err)
	}
	if _, err := c.fsm.index(); err != nil {
		t.Fatalf("halted by a refusal: %v", err)
	}
}

func TestSecurityRaftGarbageConfigurationIsRefusedAndHalts(t *testing.T) {
	c := guardedMember()
	bad := []*raft.Log{{Index: 5, Type: raft.LogConfiguration, Data: []byte{0x81, 0xc1}}}
	err := c.checkRaftRPC(raft.RPC{Command: &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("h2")}, Entries: bad}})
	if err == nil {
		t.Fatal("a garbage configuration entry passed")
	}
	if _, halted := c.fsm.index(); !errors.Is(halted, ErrHalted) {
		t.Fatalf("not halted: %v", halted)
	}
	c = guardedMember()
	err = c.checkRaftRPC(raft.RPC{Command: &raft.InstallSnapshotRequest{RPCHeader: raft.RPCHeader{ID: []byte("h2")}, SnapshotVersion: 1, Configuration: []byte{0xc1}}})
	if err == nil {
		t.Fatal("a snapshot with a garbage configuration passed")
	}
	// The log store refuses it too, so no restart meets it.
	s := newWatchedStore(raft.NewInmemStore(), raft.NewInmemStore(), nil)
	if err := s.StoreLogs(bad); err == nil {
		t.Fatal("the log store stored a garbage configuration entry")
	}
}

func TestSecurityRemovedMembersStreamIsCut(t *testing.T) {
	var member atomic.Bool
	member.Store(true)
	a, b := net.Pipe()
	defer a.Close()
	conn := &memberConn{Conn: b, peer: "h2", mayStay: func(string) bool { return member.Load() }, log: func(string, ...any) {}}
	go func() { _, _ = a.Write([]byte("x")); _, _ = a.Write([]byte("y")) }()
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err != nil {
		t.Fatalf("a member's stream: %v", err)
	}
	member.Store(false)
	if n, err := conn.Read(buf); !errors.Is(err, ErrNotAuthorized) || n != 0 {
		t.Fatalf("after removal: read %d bytes, err %v; want nothing and ErrNotAuthorized", n, err)
	}
	if _, err := a.Write([]byte("z")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("the stream stayed open: %v", err)
	}
}

func TestSecurityHeartbeatFromNonMemberIsDropped(t *testing.T) {
	c := guardedMember()
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer trans.Close()
	done := make(chan struct{})
	defer close(done)
	g := newGuarded(trans, c.checkRaftRPC, done)
	var called atomic.Bool
	g.SetHeartbeatHandler(func(rpc raft.RPC) { called.Store(true); rpc.Respond(&raft.AppendEntriesResponse{}, nil) })
	client, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	beat := func(id string) error {
		// A heartbeat: a term and a leader, nothing else (Raft's fast path).
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte(id), Addr: []byte("127.0.0.1:1")}, Term: 1000}
		return client.AppendEntries("h1", trans.LocalAddr(), req, &raft.AppendEntriesResponse{})
	}
	if err := beat("h9"); err == nil || called.Load() {
		t.Fatalf("a non-member's heartbeat: err %v, reached Raft %v", err, called.Load())
	}
	if err := beat("h2"); err != nil || !called.Load() {
		t.Fatalf("a member's heartbeat: err %v, reached Raft %v", err, called.Load())
	}
}
