package nfs_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/nfs"
)

var update = flag.Bool("update", false, "record the server's answers in testdata/ from a live nfs-ganesha")

type recorder struct {
	net.Conn
	mu  *sync.Mutex
	got *[]byte
}

func (r recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	*r.got = append(*r.got, p[:n]...)
	r.mu.Unlock()
	return n, err
}

const goldenXID = 0x58454e00 // "XEN\0"

// TestRecordedGaneshaConversation replays a real nfs-ganesha's and
// rpcbind's answers to one probe (recorded with -update): three
// connections, portmapper, MOUNT and NFS.
func TestRecordedGaneshaConversation(t *testing.T) {
	const export = "/export"
	files := []string{"rpcbind", "mountd", "nfsd"}
	path := func(i int) string { return filepath.Join("testdata", "ganesha-"+files[i]+".bin") }
	if *update {
		g := startGanesha(t)
		g.Disk(t, "pool/vm1.img", 12<<20)
		var mu sync.Mutex
		var got [3][]byte
		n := 0
		dial := func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			i := n
			n++
			return recorder{Conn: c, mu: &mu, got: &got[i]}, nil
		}
		// Only the answers are stored; the replay asks for "/export" and
		// the server's file handles inside the answers are opaque to it.
		if _, err := nfs.Probe(ctxT(t), "127.0.0.1", g.Export, "pool/vm1.img", nfs.WithDialer(dial), nfs.WithFirstXID(goldenXID)); err != nil {
			t.Fatal(err)
		}
		for i := range files {
			if err := os.WriteFile(path(i), got[i], 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var answers [3][]byte
	for i := range files {
		b, err := os.ReadFile(path(i))
		if err != nil {
			t.Fatalf("%v (record with: go test -run RecordedGanesha -update, as root with nfs-ganesha installed)", err)
		}
		answers[i] = b
	}
	replay := func(cut int, at int) func(ctx context.Context, addr string) (net.Conn, error) {
		n := 0
		return func(ctx context.Context, addr string) (net.Conn, error) {
			if n >= len(answers) {
				return nil, fmt.Errorf("unexpected connection %d to %s", n, addr)
			}
			a := answers[n]
			if n == at {
				a = a[:cut]
			}
			n++
			client, server := net.Pipe()
			go func() { _, _ = io.Copy(io.Discard, server) }()
			go func() { _, _ = server.Write(a); server.Close() }()
			return client, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := nfs.Probe(ctx, "127.0.0.1", export, "pool/vm1.img", nfs.WithDialer(replay(0, -1)), nfs.WithFirstXID(goldenXID))
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != 12<<20 || a.Type != nfs.TypeRegular {
		t.Fatalf("recorded attributes %+v, want a 12 MiB regular file", a)
	}
	// Truncated answers on any of the three connections are errors.
	for conn := range answers {
		for cut := 0; cut < len(answers[conn]); cut += 13 {
			_, err := nfs.Probe(ctx, "127.0.0.1", export, "pool/vm1.img", nfs.WithDialer(replay(cut, conn)), nfs.WithFirstXID(goldenXID))
			// The mount connection's last answer (28 bytes) is UMNT's,
			// which the probe does not need.
			if err == nil && (conn != 1 || cut < len(answers[conn])-28) {
				t.Errorf("probe with %s's answer cut at %d of %d succeeded", files[conn], cut, len(answers[conn]))
			}
			if err != nil && !errors.Is(err, storage.ErrUnreachable) && !errors.Is(err, nfs.ErrMalformedReply) {
				t.Errorf("cut %s at %d: %v, want ErrUnreachable or ErrMalformedReply", files[conn], cut, err)
			}
		}
	}
}
