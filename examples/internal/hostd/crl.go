package hostd

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync"
	"time"
)

// Revocations refuses the certificates that the pool CA's revocation list
// names, on the cluster port (ha.TLSConfig.VerifyPeer) and on the API alike.
// It reads the list again whenever the file changes, so a revocation copied
// to the members takes effect at the next connection, without a restart.
//
// A list that can no longer be read, or whose new contents do not parse or
// are not signed by the CA, leaves the last good list in force: refusing
// every peer would cut the pool apart over a bad file, and accepting every
// peer would undo the revocations. The failure is returned by Err.
type Revocations struct {
	path string
	ca   *x509.Certificate

	mu      sync.Mutex
	seen    time.Time // the file's modification time when last read
	size    int64
	revoked map[string]bool // hex serials
	err     error
}

// LoadRevocations reads the revocation list at path, checked against the CA
// certificate in caFile. The first read must succeed.
func LoadRevocations(path, caFile string) (*Revocations, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("crl: CA: %w", err)
	}
	blk, _ := pem.Decode(caPEM)
	if blk == nil {
		return nil, fmt.Errorf("crl: %s holds no PEM certificate", caFile)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("crl: CA %s: %w", caFile, err)
	}
	r := &Revocations{path: path, ca: ca}
	r.refresh()
	if r.err != nil {
		return nil, r.err
	}
	return r, nil
}

// Check refuses cert if the current list names its serial.
func (r *Revocations) Check(cert *x509.Certificate) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refresh()
	if serial := cert.SerialNumber.Text(16); r.revoked[serial] {
		return fmt.Errorf("certificate %s (serial %s) is revoked (%s)", cert.Subject.CommonName, serial, r.path)
	}
	return nil
}

// Err is the last failure to read the list again (nil if the last read
// worked): the list in force is then the last good one.
func (r *Revocations) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// refresh reads the file again if it changed since the last read. Callers
// hold mu (or own r alone).
func (r *Revocations) refresh() {
	fi, err := os.Stat(r.path)
	if err != nil {
		r.err = fmt.Errorf("crl: %w", err)
		return
	}
	if r.revoked != nil && fi.ModTime().Equal(r.seen) && fi.Size() == r.size {
		return
	}
	revoked, err := parseCRL(r.path, r.ca)
	if err != nil {
		r.err = err
		return
	}
	r.revoked, r.seen, r.size, r.err = revoked, fi.ModTime(), fi.Size(), nil
}

// parseCRL reads a PEM revocation list signed by ca into the set of revoked
// serials (hex).
func parseCRL(path string, ca *x509.Certificate) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("crl: %s holds no PEM revocation list", path)
	}
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("crl: %s: %w", path, err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("crl: %s is not signed by the pool's CA: %w", path, err)
	}
	out := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		out[e.SerialNumber.Text(16)] = true
	}
	return out, nil
}
