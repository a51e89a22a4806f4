package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenha/xenha/examples/internal/hostd"
	"github.com/xenha/xenha/ha/pki"
)

func caRun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"ca"}, args...), &out, &errb)
	return out.String() + errb.String(), code
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func leaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCAOnDisk: ca init and issue create their directories 0700 and keys
// 0600, a second day's issue reads the CA back, a member's files load as a
// member identity (pki.LoadFiles), and an operator's cannot.
func TestCAOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deep", "ca")
	if out, code := caRun(t, "init", "pool", "--dir", dir); code != exitOK {
		t.Fatalf("ca init: %d %s", code, out)
	}
	if out, code := caRun(t, "init", "pool", "--dir", dir); code == exitOK || !strings.Contains(out, "already exists") {
		t.Fatalf("a second ca init: %d %s; want a refusal", code, out)
	}
	for _, args := range [][]string{{"issue", "member", "h1"}, {"issue", "operator", "alice"}} {
		if out, code := caRun(t, append(args, "--dir", dir)...); code != exitOK {
			t.Fatalf("ca %v: %d %s", args, code, out)
		}
	}
	for path, want := range map[string]os.FileMode{
		dir: 0o700, filepath.Join(dir, "ca.key"): 0o600, filepath.Join(dir, "members"): 0o700,
		filepath.Join(dir, "members", "h1"): 0o700, filepath.Join(dir, "members", "h1", "h1.key"): 0o600,
		filepath.Join(dir, "operators", "alice", "alice.key"): 0o600,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("%s has mode %v, want %v", path, got, want)
		}
	}
	m := filepath.Join(dir, "members", "h1")
	if _, err := pki.LoadFiles(filepath.Join(m, "ca.pem"), filepath.Join(m, "h1.pem"), filepath.Join(m, "h1.key")); err != nil {
		t.Fatalf("a member's files do not load as its identity: %v", err)
	}
	o := filepath.Join(dir, "operators", "alice")
	if _, err := pki.LoadFiles(filepath.Join(o, "ca.pem"), filepath.Join(o, "alice.pem"), filepath.Join(o, "alice.key")); err == nil {
		t.Fatal("an operator's certificate loads as a member identity: it could speak Raft")
	}
	if !IsOperator(leaf(t, filepath.Join(o, "alice.pem"))) || IsOperator(leaf(t, filepath.Join(m, "h1.pem"))) {
		t.Fatal("IsOperator does not tell the operator from the member")
	}
	if err := os.Chmod(filepath.Join(dir, "ca.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := caRun(t, "issue", "member", "h2", "--dir", dir); code == exitOK || !strings.Contains(out, "chmod 600") {
		t.Fatalf("issue with a readable CA key: %d %s; want a refusal", code, out)
	}
	if out, code := caRun(t, "issue", "member", "Bad_Name", "--dir", dir); code == exitOK {
		t.Fatalf("issue for a bad name: %d %s", code, out)
	}
}

// TestRevokedOperatorRefused: after ca revoke, the API's TLS refuses the
// operator's certificate while another operator's still works.
func TestRevokedOperatorRefused(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"init", "pool"}, {"issue", "member", "h1"}, {"issue", "operator", "alice"}, {"issue", "operator", "bob"}, {"revoke", "operator", "alice"}} {
		if out, code := caRun(t, append(args, "--dir", dir)...); code != exitOK {
			t.Fatalf("ca %v: %d %s", args, code, out)
		}
	}
	if out, code := caRun(t, "revoke", "operator", "alice", "--dir", dir); code == exitOK {
		t.Fatalf("a second revoke: %d %s", code, out)
	}
	m := filepath.Join(dir, "members", "h1")
	f := &hostd.File{TLS: hostd.TLSFiles{CA: filepath.Join(m, "ca.pem"), Cert: filepath.Join(m, "h1.pem"), Key: filepath.Join(m, "h1.key")},
		API: &hostd.API{CRL: filepath.Join(dir, "crl.pem")}}
	tc, err := apiTLS(f)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := operatorOf(r)
		if !ok {
			http.Error(w, "not an operator", http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(name))
	}))
	srv.TLS = tc
	srv.StartTLS()
	defer srv.Close()
	call := func(who string) (string, error) {
		o := filepath.Join(dir, "operators", who)
		pair, err := tls.LoadX509KeyPair(filepath.Join(o, who+".pem"), filepath.Join(o, who+".key"))
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true}}}
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != 200 {
			return "", errors.New(b.String())
		}
		return b.String(), nil
	}
	if who, err := call("bob"); err != nil || who != "bob" {
		t.Fatalf("bob: %q, %v", who, err)
	}
	if who, err := call("alice"); err == nil {
		t.Fatalf("revoked alice was let in as %q", who)
	}
}
