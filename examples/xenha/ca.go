package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/xenha/xenha/ha"
)

// The CA on disk, in one directory (0700):
//
//	ca.pem                  the CA certificate, installed on every member and client
//	ca.key                  its private key (0600); keep this directory off the members
//	issued.json             every certificate issued: name, role, serial, expiry, revoked
//	crl.pem                 the revocation list, rewritten by revoke
//	members/NAME/           ca.pem, NAME.pem, NAME.key for member NAME (ha/pki.LoadFiles reads them)
//	operators/NAME/         ca.pem, NAME.pem, NAME.key for operator NAME (xenha --cert/--key)

// Certificate roles.
const (
	RoleMember   = "member"
	RoleOperator = "operator"
)

// operatorUnit marks an operator certificate (Subject OU), as pki.IssueOperator
// issues them.
const operatorUnit = ha.OperatorOU

// IsOperator reports whether a verified client certificate is an
// operator's: it has the operator role (ha.IsOperatorCert) and can
// authenticate only as a client, so it can never serve as a member's
// identity (members need server auth, which ha's Raft listener checks).
func IsOperator(c *x509.Certificate) bool {
	return ha.IsOperatorCert(c) &&
		slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) &&
		!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
}

// Issued is one line of issued.json.
type Issued struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Serial  string    `json:"serial"` // hex
	Expires time.Time `json:"expires"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// diskCA is a CA kept in a directory.
type diskCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ErrCAExists: ca init would overwrite a CA.
var ErrCAExists = errors.New("ca: a CA already exists in this directory")

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// writeFile writes data with mode, creating its directory (0700) first.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return os.Chmod(path, mode) // WriteFile keeps an existing file's mode
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// initCA makes a new CA for pool in dir.
func initCA(dir, pool string, validFor time.Duration) (*diskCA, error) {
	if _, err := os.Stat(filepath.Join(dir, "ca.key")); err == nil {
		return nil, fmt.Errorf("%w: %s (remove it first if you really mean a new CA: every certificate it issued stops working)", ErrCAExists, dir)
	}
	if !nameRE.MatchString(pool) {
		return nil, fmt.Errorf("ca: pool name %q: use lower-case letters, digits and hyphens", pool)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: key: %w", err)
	}
	sn, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: "xenha CA " + pool},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: key: %w", err)
	}
	if err := writeFile(filepath.Join(dir, "ca.key"), pemBlock("PRIVATE KEY", keyDER), 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "ca.pem"), pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, err
	}
	ca := &diskCA{dir: dir, cert: cert, key: key}
	return ca, ca.writeCRL(nil)
}

// openCA reads the CA in dir, refusing a key that others can read.
func openCA(dir string) (*diskCA, error) {
	keyPath := filepath.Join(dir, "ca.key")
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w (run xenha ca init first)", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ca: %s has mode %v: others can read the CA key; chmod 600 it", keyPath, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("ca: %s holds no PEM key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("ca: %s: not an ECDSA key", keyPath)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		return nil, fmt.Errorf("ca: %s holds no PEM certificate", filepath.Join(dir, "ca.pem"))
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: ca.pem: %w", err)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		return nil, fmt.Errorf("ca: ca.key does not go with ca.pem in %s", dir)
	}
	return &diskCA{dir: dir, cert: cert, key: key}, nil
}

// Files are the paths issue wrote.
type Files struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// issue signs a certificate for name in role and writes it with the CA
// certificate and its key (0600) under members/ or operators/.
func (ca *diskCA) issue(role, name string, validFor time.Duration) (Files, error) {
	if !nameRE.MatchString(name) {
		return Files{}, fmt.Errorf("ca: name %q: use lower-case letters, digits and hyphens (a member's name is its ID)", name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("ca: key for %s: %w", name, err)
	}
	sn, err := newSerial()
	if err != nil {
		return Files{}, fmt.Errorf("ca: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validFor),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	sub := "members"
	switch role {
	case RoleMember:
		tmpl.DNSNames = []string{name}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case RoleOperator:
		sub = "operators"
		tmpl.Subject.OrganizationalUnit = []string{operatorUnit}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return Files{}, fmt.Errorf("ca: role %q: use member or operator", role)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return Files{}, fmt.Errorf("ca: sign %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Files{}, fmt.Errorf("ca: key for %s: %w", name, err)
	}
	dir := filepath.Join(ca.dir, sub, name)
	out := Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+".key")}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{out.Key, pemBlock("PRIVATE KEY", keyDER), 0o600},
		{out.Cert, pemBlock("CERTIFICATE", der), 0o644},
		{out.CA, pemBlock("CERTIFICATE", ca.cert.Raw), 0o644},
	} {
		if err := writeFile(w.path, w.data, w.mode); err != nil {
			return Files{}, err
		}
	}
	list, err := ca.issued()
	if err != nil {
		return Files{}, err
	}
	list = append(list, Issued{Name: name, Role: role, Serial: sn.Text(16), Expires: tmpl.NotAfter})
	return out, ca.saveIssued(list)
}

func (ca *diskCA) issued() ([]Issued, error) {
	b, err := os.ReadFile(filepath.Join(ca.dir, "issued.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	var list []Issued
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("ca: issued.json: %w", err)
	}
	return list, nil
}

func (ca *diskCA) saveIssued(list []Issued) error {
	b, _ := json.MarshalIndent(list, "", "  ")
	return writeFile(filepath.Join(ca.dir, "issued.json"), append(b, '\n'), 0o600)
}

// revoke marks every unrevoked certificate of name in role revoked and
// rewrites crl.pem. It returns how many it revoked.
func (ca *diskCA) revoke(role, name string) (int, error) {
	list, err := ca.issued()
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range list {
		if list[i].Name == name && list[i].Role == role && list[i].Revoked.IsZero() {
			list[i].Revoked = time.Now()
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("ca: no unrevoked %s certificate named %q in %s", role, name, filepath.Join(ca.dir, "issued.json"))
	}
	if err := ca.saveIssued(list); err != nil {
		return 0, err
	}
	return n, ca.writeCRL(list)
}

// writeCRL writes crl.pem listing every revoked serial.
func (ca *diskCA) writeCRL(list []Issued) error {
	var entries []x509.RevocationListEntry
	for _, c := range list {
		if c.Revoked.IsZero() {
			continue
		}
		sn, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok {
			return fmt.Errorf("ca: issued.json: serial %q of %s is not hex", c.Serial, c.Name)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: c.Revoked})
	}
	num, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: num, ThisUpdate: now, NextUpdate: now.Add(365 * 24 * time.Hour), RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		return fmt.Errorf("ca: revocation list: %w", err)
	}
	return writeFile(filepath.Join(ca.dir, "crl.pem"), pemBlock("X509 CRL", der), 0o644)
}
