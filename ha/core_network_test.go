package ha

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzHello feeds arbitrary bytes to a listening member's connection
// handling: whatever arrives, it answers or hangs up, and never hands an
// unchecked connection on.
func FuzzHello(f *testing.F) {
	var ok bytes.Buffer
	_ = writeStrings(&ok, streamRPC, "c1", "h2")
	f.Add(ok.Bytes())
	var wrong bytes.Buffer
	_ = writeStrings(&wrong, streamRaft, "other", "h2")
	f.Add(wrong.Bytes())
	f.Add([]byte{22, 3, 1, 0, 5})
	f.Add([]byte{'C', 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		handed := make(chan string, 1)
		m := &mux{
			clusterID: "c1", self: "h1",
			raftConns: make(chan net.Conn, 1),
			rpc:       func(conn net.Conn, peer peerID) { handed <- peer.id; conn.Close() },
			admit:     func(peerID, byte) error { return nil },
			log:       func(string, ...any) {},
			closed:    make(chan struct{}),
		}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { m.handle(server); close(done) }()
		go func() { _, _ = client.Write(data) }()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		select {
		case <-done:
		case <-time.After(100 * time.Millisecond):
			// Waiting for more bytes than were sent: like a slow peer; the
			// hello deadline would end it.
		}
		client.Close()
		<-done
		select {
		case peer := <-handed:
			var want bytes.Buffer
			_ = writeStrings(&want, streamRPC, "c1", peer)
			if !bytes.HasPrefix(data, want.Bytes()) {
				t.Fatalf("handed %q on without a valid hello: %q", peer, data)
			}
		default:
		}
		select {
		case c := <-m.raftConns:
			c.Close()
			if len(data) < 5 || data[0] != streamRaft || string(data[3:5]) != "c1" {
				t.Fatalf("raft stream accepted from %q", data)
			}
		default:
		}
	})
}

func TestHelloRefusesAnotherCluster(t *testing.T) {
	m := &mux{
		clusterID: "c1", self: "h1",
		raftConns: make(chan net.Conn, 1),
		rpc:       func(conn net.Conn, peer peerID) { t.Error("RPC handed on"); conn.Close() },
		admit:     func(peerID, byte) error { return nil },
		log:       func(string, ...any) {},
		closed:    make(chan struct{}),
	}
	client, server := net.Pipe()
	go m.handle(server)
	if err := writeStrings(client, streamRPC, "c2", "h2"); err != nil {
		t.Fatal(err)
	}
	status, fields, err := readStrings(client, 3)
	if err != nil {
		t.Fatal(err)
	}
	if status != helloRefused || fields[0] != "h1" {
		t.Fatalf("status %d fields %q", status, fields)
	}
	werr := errFromWire("h1", atoiOr(fields[1]), fields[2])
	if !errors.Is(werr, ErrWrongCluster) || !bytes.Contains([]byte(werr.Error()), []byte("ClusterID")) {
		t.Fatalf("refusal %q does not say what to check", werr)
	}
}

func atoiOr(s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0
		}
		n = n*10 + int(r-'0')
	}
	return n
}
