package iscsi_test

import (
	"context"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/storage/iscsi"
)

var update = flag.Bool("update", false, "record the target's answers in testdata/ from a live tgtd")

// recorder keeps every byte the target sent.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.got = append(r.got, p[:n]...)
	r.mu.Unlock()
	return n, err
}

// replayConn plays recorded target bytes to the initiator and swallows what
// it sends.
func replayConn(t *testing.T, answers []byte) net.Conn {
	client, server := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, server) }()
	go func() { _, _ = server.Write(answers); server.Close() }()
	t.Cleanup(func() { client.Close() })
	return client
}

const (
	goldenIQN  = "iqn.2026-11.test.xenha:golden"
	goldenSize = 96 << 20
)

// TestRecordedTgtdConversations replays a real tgtd's answers, recorded
// with -update, through the initiator: the decoder is held to bytes a real
// target produced, on machines without tgtd too.
func TestRecordedTgtdConversations(t *testing.T) {
	probeFile := filepath.Join("testdata", "tgtd-probe.bin")
	discoverFile := filepath.Join("testdata", "tgtd-discovery.bin")
	if *update {
		g := startTgtd(t)
		g.AddTarget(1, goldenIQN, goldenSize)
		g.AddTarget(2, goldenIQN+"-b", 1<<20)
		record := func(file string, talk func(net.Conn) error) {
			nc, err := net.Dial("tcp", g.Portal)
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{Conn: nc}
			if err := talk(rec); err != nil {
				t.Fatal(err)
			}
			nc.Close()
			if err := os.WriteFile(file, rec.got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		record(probeFile, func(c net.Conn) error {
			_, err := iscsi.ProbeOverConn(ctxT(t), c, goldenIQN, 1)
			return err
		})
		record(discoverFile, func(c net.Conn) error {
			_, err := iscsi.DiscoverOverConn(ctxT(t), c)
			return err
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	probe, err := os.ReadFile(probeFile)
	if err != nil {
		t.Fatalf("%v (record it with: go test -run RecordedTgtd -update, as root with tgt installed)", err)
	}
	c, err := iscsi.ProbeOverConn(ctx, replayConn(t, probe), goldenIQN, 1)
	if err != nil {
		t.Fatalf("replaying %s: %v", probeFile, err)
	}
	if c.Bytes() != goldenSize || c.BlockSize != 512 {
		t.Fatalf("recorded capacity %+v = %d bytes, want %d", c, c.Bytes(), goldenSize)
	}
	disc, err := os.ReadFile(discoverFile)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := iscsi.DiscoverOverConn(ctx, replayConn(t, disc))
	if err != nil {
		t.Fatalf("replaying %s: %v", discoverFile, err)
	}
	var names []string
	for _, tg := range targets {
		names = append(names, tg.Name)
		if len(tg.Addresses) == 0 || !strings.HasSuffix(tg.Addresses[0], ",1") {
			t.Errorf("target %s addresses %v, want a portal with TPGT 1", tg.Name, tg.Addresses)
		}
	}
	if strings.Join(names, " ") != goldenIQN+" "+goldenIQN+"-b" {
		t.Fatalf("recorded discovery lists %v", names)
	}
	// Every prefix that ends before the Logout Response (the last 48 bytes,
	// whose absence the probe tolerates) is a truncated answer: an error,
	// never a result or a hang.
	for cut := 0; cut < len(probe)-bhsLen; cut += 7 {
		if _, err := iscsi.ProbeOverConn(ctx, replayConn(t, probe[:cut]), goldenIQN, 1); err == nil {
			t.Errorf("probe over the first %d of %d recorded bytes succeeded", cut, len(probe))
		}
	}
}

const bhsLen = 48
