package pki

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestMemberCertificateNamesItsIDAndChainsToTheCA(t *testing.T) {
	ca, err := NewCA("pool")
	if err != nil {
		t.Fatal(err)
	}
	tc, err := ca.Member("h1")
	if err != nil {
		t.Fatal(err)
	}
	leaf := tc.Cert.Leaf
	if err := leaf.VerifyHostname("h1"); err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("h2"); err == nil {
		t.Fatal("certificate for h1 also names h2")
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: tc.CA, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("usage %v: %v", usage, err)
		}
	}
	other, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: other.Pool}); err == nil {
		t.Fatal("certificate verifies against an unrelated CA")
	}
	if len(ca.CertPEM()) == 0 {
		t.Fatal("empty PEM")
	}
}

func TestValidFor(t *testing.T) {
	ca, err := NewCA("pool", ValidFor(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("h1", ValidFor(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if d := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore); d > 2*time.Hour {
		t.Fatalf("validity %v, want about an hour", d)
	}
}

func TestOperatorRole(t *testing.T) {
	ca, err := NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	op, err := ca.IssueOperator("alice")
	if err != nil {
		t.Fatal(err)
	}
	member, err := ca.Issue("h1")
	if err != nil {
		t.Fatal(err)
	}
	if !IsOperator(op.Leaf) || IsOperator(member.Leaf) {
		t.Fatalf("IsOperator: operator %v, member %v", IsOperator(op.Leaf), IsOperator(member.Leaf))
	}
	if len(op.Leaf.DNSNames) != 0 || op.Leaf.Subject.CommonName != "alice" {
		t.Fatalf("operator certificate names %v / %q", op.Leaf.DNSNames, op.Leaf.Subject.CommonName)
	}
	if _, err := op.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("an operator certificate verifies for server auth")
	}
	if _, err := ca.IssueOperator(""); err == nil {
		t.Fatal("an operator certificate without a name was issued")
	}
}
