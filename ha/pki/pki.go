// Package pki makes the certificates a xenha cluster needs for mutual TLS:
// an ephemeral certificate authority and, from it, one certificate per
// member naming the member's ID. It is meant for tests, the demo and small
// embedders; sites with their own PKI issue equivalent certificates (ECDSA or
// RSA, the member ID as a DNS SAN, usable for client and server auth).
//
// A program that runs on a host reads its identity from PEM files with
// LoadFiles, which checks them as a peer would; CA.WriteMember writes such
// files.
//
// # Roles
//
// A certificate signed by the cluster CA has one of two roles:
//
//   - member (CA.Issue, CA.Member): the member ID as CommonName and DNS SAN,
//     for client and server auth. A member certificate acts only while the
//     Raft configuration names its ID: a removed member's certificate is
//     refused at its next request, with no change to the CA.
//   - operator (CA.IssueOperator, CA.Operator): the operator's name as
//     CommonName, the organizational unit "xenha-operator" (ha.OperatorOU),
//     no DNS SAN, client auth only. An operator may read the state and call
//     the administrative operations (VMs, volumes, maintenance, migration,
//     fence acknowledgements under its own name, member removal); it never
//     speaks Raft and never joins. IsOperator tells the two apart; a site
//     with its own PKI gives its operators' certificates that OU and keeps it
//     out of its members'.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/xenha/xenha/ha"
)

// CA is a certificate authority whose key lives only in memory.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// Pool holds Cert, for ha.TLSConfig.CA.
	Pool *x509.CertPool
}

// Option adjusts NewCA or Issue.
type Option func(*options)

type options struct {
	validFor time.Duration
	now      func() time.Time
}

// ValidFor sets how long certificates are valid (default one year).
func ValidFor(d time.Duration) Option { return func(o *options) { o.validFor = d } }

func apply(opts []Option) options {
	o := options{validFor: 365 * 24 * time.Hour, now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA makes a self-signed ECDSA P-256 CA named after the cluster.
func NewCA(clusterID string, opts ...Option) (*CA, error) {
	o := apply(opts)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, fmt.Errorf("pki: CA serial: %w", err)
	}
	now := o.now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "xenha CA " + clusterID},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(o.validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, key: key, Pool: pool}, nil
}

// Issue makes a certificate for member id (the ID as CommonName and DNS
// SAN), for both client and server authentication.
func (ca *CA) Issue(id string, opts ...Option) (tls.Certificate, error) {
	return ca.issue(id, &x509.Certificate{
		Subject:     pkix.Name{CommonName: id},
		DNSNames:    []string{id},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, opts)
}

// IssueOperator makes an operator certificate for name: CommonName name,
// organizational unit ha.OperatorOU, client authentication only.
func (ca *CA) IssueOperator(name string, opts ...Option) (tls.Certificate, error) {
	if name == "" {
		return tls.Certificate{}, fmt.Errorf("pki: operator certificate: empty name")
	}
	return ca.issue(name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, OrganizationalUnit: []string{ha.OperatorOU}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, opts)
}

// Operator returns the ha.TLSConfig an operator's tool presents: this CA
// and a fresh operator certificate for name.
func (ca *CA) Operator(name string, opts ...Option) (*ha.TLSConfig, error) {
	cert, err := ca.IssueOperator(name, opts...)
	if err != nil {
		return nil, err
	}
	return &ha.TLSConfig{CA: ca.Pool, Cert: cert}, nil
}

// IsOperator reports whether cert has the operator role (see Roles).
func IsOperator(cert *x509.Certificate) bool { return ha.IsOperatorCert(cert) }

func (ca *CA) issue(name string, tmpl *x509.Certificate, opts []Option) (tls.Certificate, error) {
	o := apply(opts)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: key for %s: %w", name, err)
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: serial for %s: %w", name, err)
	}
	now := o.now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Minute), now.Add(o.validFor)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: sign certificate for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: parse certificate for %s: %w", name, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Member returns the ha.TLSConfig for member id: this CA and a fresh
// certificate naming id.
func (ca *CA) Member(id string, opts ...Option) (*ha.TLSConfig, error) {
	cert, err := ca.Issue(id, opts...)
	if err != nil {
		return nil, err
	}
	return &ha.TLSConfig{CA: ca.Pool, Cert: cert}, nil
}

// CertPEM is the CA certificate in PEM, for distribution to members.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}
