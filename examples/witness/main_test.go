package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
)

// TestWitnessJoinsAsVoter runs the witness against a one-host pool over
// loopback TCP with mutual TLS, from certificate files as an operator would
// give them, and checks that it becomes a voter registered as a witness.
func TestWitnessJoinsAsVoter(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ca, err := pki.NewCA("wit")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token", []byte("s3cret\n"))
	m, err := ca.WriteMember(dir, "witness")
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile := m.CA, m.Cert, m.Key

	hostTLS, err := ca.Member("host-a")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ha.FastLAN()
	cfg.ID, cfg.ClusterID, cfg.DataDir, cfg.BindAddr = "host-a", "wit", t.TempDir(), "127.0.0.1:0"
	cfg.JoinToken, cfg.TLS = "s3cret", hostTLS
	host, err := ha.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close(context.Background()) })
	if err := host.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}

	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- run(wctx, slog.New(slog.DiscardHandler), "witness", "wit", t.TempDir(), "127.0.0.1:0",
			host.Addr(), token, caFile, certFile, keyFile, true, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("witness stopped before joining: %v", err)
	case <-ctx.Done():
		t.Fatal("witness did not join in time")
	}
	for {
		st, err := host.State(ctx, ha.Stale)
		if err != nil {
			t.Fatal(err)
		}
		members, err := host.Members()
		if err != nil {
			t.Fatal(err)
		}
		var voter bool
		for _, m := range members {
			voter = voter || m.ID == "witness" && m.Voter
		}
		if h := st.Hosts["witness"]; h != nil && h.Role == ha.RoleWitness && voter {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("witness stopped before joining: %v", err)
		case <-ctx.Done():
			t.Fatalf("witness not a voting witness in time: members %+v", members)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("witness exit: %v", err)
	}
}

// The witness refuses files it cannot use before it starts, naming the
// flag to fix.
func TestWitnessRefusesMissingFiles(t *testing.T) {
	dir := t.TempDir()
	token, notPEM := filepath.Join(dir, "token"), filepath.Join(dir, "ca.txt")
	for _, p := range []string{token, notPEM} {
		if err := os.WriteFile(p, []byte("not a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ token, ca, want string }{
		{filepath.Join(dir, "no-token"), notPEM, "-token-file"},
		{token, filepath.Join(dir, "no-ca"), "-ca"},
		{token, notPEM, "holds no PEM certificate"},
	} {
		data := t.TempDir()
		err := run(t.Context(), slog.New(slog.DiscardHandler), "witness", "wit", data, "127.0.0.1:0",
			"127.0.0.1:1", tc.token, tc.ca, "", "", true, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run with token %s, CA %s = %v; want an error naming %q", tc.token, tc.ca, err, tc.want)
		}
		if entries, _ := os.ReadDir(data); len(entries) > 0 {
			t.Errorf("run with token %s, CA %s left %d entries in its data directory", tc.token, tc.ca, len(entries))
		}
	}
}
