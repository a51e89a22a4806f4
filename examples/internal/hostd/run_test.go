package hostd

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
)

// files writes what an operator installs on a host: the CA, the host's
// certificate and key, the join token and a BMC password.
func files(t *testing.T, ca *pki.CA, id string) (TLSFiles, string, string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m, err := ca.WriteMember(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	return TLSFiles{CA: m.CA, Cert: m.Cert, Key: m.Key}, write("token", []byte("pool-token\n")), write("bmc", []byte("bmc-password\n"))
}

// TestDaemonsFormAPool starts two daemons from configuration files, the
// first forming the pool and the second joining it, with libvirt's test
// driver as hypervisor and IPMI fencing configured, and checks that both
// are registered hosts of one pool.
func TestDaemonsFormAPool(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ca, err := pki.NewCA("pool")
	if err != nil {
		t.Fatal(err)
	}
	file := func(id string) *File {
		tf, token, pw := files(t, ca, id)
		return &File{
			ID: id, ClusterID: "pool", DataDir: t.TempDir(), Bind: "127.0.0.1:0",
			JoinTokenFile: token, TLS: tf, Profile: "fastlan", Hypervisor: "test:///default",
			Fence: map[string][]FenceLevel{
				"xen-a": {{Method: "ipmi", Address: "127.0.0.1", Port: 1, User: "fencer", PasswordFile: pw}},
				"xen-b": {{Method: "ipmi", Address: "127.0.0.1", Port: 1, User: "fencer", PasswordFile: pw}},
			},
			Storage: []string{"nbd", "drbd"},
		}
	}
	log := slog.New(slog.DiscardHandler)
	a, b := file("xen-a"), file("xen-b")
	a.Bootstrap = true
	for _, f := range []*File{a, b} {
		if err := f.check(); err != nil {
			t.Fatalf("the test's own file is refused: %v", err)
		}
	}

	readyA := make(chan *ha.Cluster, 1)
	doneA := make(chan error, 1)
	ctxA, stopA := context.WithCancel(ctx)
	defer stopA()
	go func() { doneA <- run(ctxA, a, log, func(c *ha.Cluster) { readyA <- c }) }()
	var ca1 *ha.Cluster
	select {
	case ca1 = <-readyA:
	case err := <-doneA:
		t.Fatalf("first daemon stopped: %v", err)
	}

	b.Join = []string{ca1.Addr()}
	readyB := make(chan *ha.Cluster, 1)
	doneB := make(chan error, 1)
	ctxB, stopB := context.WithCancel(ctx)
	defer stopB()
	go func() { doneB <- run(ctxB, b, log, func(c *ha.Cluster) { readyB <- c }) }()
	var cb *ha.Cluster
	select {
	case cb = <-readyB:
	case err := <-doneB:
		t.Fatalf("second daemon stopped: %v", err)
	}
	for {
		st, err := cb.State(ctx, ha.Consistent)
		if err != nil {
			t.Fatal(err)
		}
		ha1, hb := st.Hosts["xen-a"], st.Hosts["xen-b"]
		if ha1 != nil && hb != nil && ha1.State == ha.HostOnline && hb.State == ha.HostOnline {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("hosts not both online: %+v %+v", ha1, hb)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stopB()
	if err := <-doneB; err != nil {
		t.Errorf("second daemon's exit: %v", err)
	}
	stopA()
	if err := <-doneA; err != nil {
		t.Errorf("first daemon's exit: %v", err)
	}
}

func TestDaemonRefusesAFreshDirectoryWithoutBootstrapOrJoin(t *testing.T) {
	ca, err := pki.NewCA("pool")
	if err != nil {
		t.Fatal(err)
	}
	tf, token, _ := files(t, ca, "xen-c")
	f := &File{ID: "xen-c", ClusterID: "pool", DataDir: t.TempDir(), Bind: "127.0.0.1:0",
		JoinTokenFile: token, TLS: tf, Hypervisor: "test:///default"}
	err = run(t.Context(), f, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "bootstrap") {
		t.Fatalf("run without bootstrap or join = %v; want advice to bootstrap or join", err)
	}
}

func TestFencerChainRecordsUnknownHosts(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := fencers(t.Context(), map[string][]FenceLevel{"xen-b": {{Method: "ipmi", Address: "127.0.0.1", Port: 1, User: "u", PasswordFile: pw}}},
		&fencerSet{log: slog.New(slog.DiscardHandler), self: "xen-a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(*fence.Chain); !ok {
		t.Fatalf("fencers returned %T; ha records attempts only for a *fence.Chain", f)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := f.Fence(ctx, "xen-z"); !errors.Is(err, fence.ErrUnknownHost) {
		t.Fatalf("fencing an unconfigured host = %v, want ErrUnknownHost", err)
	}
}
