package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/xenha/xenha/ha"
)

// LoadFiles reads a member's mutual-TLS identity from the PEM files an
// operator installs on a host: the pool's CA certificate(s), the member's
// certificate (chain) and its private key. It checks what would otherwise
// surface only as a failed handshake with a peer: that each file holds what
// it should, that the key belongs to the certificate, and that the
// certificate is signed by the CA and usable for client and server auth.
// Every error names the file to fix; a missing file wraps fs.ErrNotExist.
func LoadFiles(caFile, certFile, keyFile string) (*ha.TLSConfig, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("pki: CA certificate: %s holds no PEM certificate (want a \"BEGIN CERTIFICATE\" block)", caFile)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("pki: member certificate: %w", err)
	}
	if !hasBlock(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		return nil, fmt.Errorf("pki: member certificate: %s holds no PEM certificate (want a \"BEGIN CERTIFICATE\" block)", certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: member key: %w", err)
	}
	if !hasBlock(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		return nil, fmt.Errorf("pki: member key: %s holds no PEM private key (want a \"BEGIN PRIVATE KEY\" block)", keyFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: member key %s does not go with certificate %s: %w", keyFile, certFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("pki: member certificate %s: %w", certFile, err)
		}
		pair.Leaf = leaf
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := leaf.Verify(opts); err != nil {
			return nil, fmt.Errorf("pki: member certificate %s (%s) does not verify against CA %s for %s: %w",
				certFile, leaf.Subject.CommonName, caFile, usageName(usage), err)
		}
	}
	return &ha.TLSConfig{CA: pool, Cert: pair}, nil
}

// hasBlock reports whether data holds a PEM block whose type fits.
func hasBlock(data []byte, fits func(typ string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if fits(b.Type) {
			return true
		}
	}
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "server auth"
	}
	return "client auth"
}

// MemberFiles names the PEM files WriteMember wrote.
type MemberFiles struct {
	CA, Cert, Key string
}

// WriteMember issues a certificate for member id and writes what an
// operator installs on that member's host into dir, as LoadFiles reads
// them: ca.pem (this CA), id.pem (the certificate) and id.key (its PKCS #8
// key, mode 0600).
func (ca *CA) WriteMember(dir, id string, opts ...Option) (MemberFiles, error) {
	cert, err := ca.Issue(id, opts...)
	if err != nil {
		return MemberFiles{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return MemberFiles{}, fmt.Errorf("pki: key for %s: %w", id, err)
	}
	f := MemberFiles{
		CA:   filepath.Join(dir, "ca.pem"),
		Cert: filepath.Join(dir, id+".pem"),
		Key:  filepath.Join(dir, id+".key"),
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{f.CA, ca.CertPEM(), 0o644},
		{f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644},
		{f.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
	} {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return MemberFiles{}, fmt.Errorf("pki: write %s's files: %w", id, err)
		}
	}
	return f, nil
}
