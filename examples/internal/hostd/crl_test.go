package hostd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRevocationsFollowTheFile: a revocation written after start takes
// effect at the next check, a lifted one too, and a damaged list leaves the
// last good one in force.
func TestRevocationsFollowTheFile(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pool CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	caFile, crlFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "crl.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	n := int64(0)
	writeCRL := func(serials ...int64) {
		t.Helper()
		n++
		var entries []x509.RevocationListEntry
		for _, s := range serials {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
		}
		b, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(n), RevokedCertificateEntries: entries,
			ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, ca, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crlFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		// A later modification time, whatever the file system's resolution.
		when := time.Now().Add(time.Duration(n) * time.Second)
		if err := os.Chtimes(crlFile, when, when); err != nil {
			t.Fatal(err)
		}
	}
	cert := func(serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "op"}}
	}
	writeCRL()
	rv, err := LoadRevocations(crlFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := rv.Check(cert(7)); err != nil {
		t.Fatalf("nothing revoked yet: %v", err)
	}
	writeCRL(7)
	if err := rv.Check(cert(7)); err == nil {
		t.Fatal("serial 7 was revoked after start, and still accepted")
	}
	if err := rv.Check(cert(8)); err != nil {
		t.Fatalf("serial 8: %v", err)
	}
	if err := os.WriteFile(crlFile, []byte("not a CRL"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	_ = os.Chtimes(crlFile, later, later)
	if err := rv.Check(cert(7)); err == nil {
		t.Fatal("a damaged list lifted the revocation")
	}
	if rv.Err() == nil {
		t.Fatal("Err does not say the list could not be read")
	}
	writeCRL()
	if err := rv.Check(cert(7)); err != nil || rv.Err() != nil {
		t.Fatalf("after the revocation was lifted: %v (Err %v)", err, rv.Err())
	}
}
