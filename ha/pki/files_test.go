package pki

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadFilesReadsWhatWriteMemberWrote(t *testing.T) {
	ca, err := NewCA("pool")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.WriteMember(t.TempDir(), "h1")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(f.Key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v, mode %v; want 0600", f.Key, err, st.Mode())
	}
	tc, err := LoadFiles(f.CA, f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	if tc.Cert.Leaf == nil || tc.Cert.Leaf.VerifyHostname("h1") != nil {
		t.Fatalf("loaded certificate does not name h1: %+v", tc.Cert.Leaf)
	}
	if !tc.CA.Equal(ca.Pool) {
		t.Fatal("loaded CA pool differs from the CA's")
	}
}

// TestLoadFilesRefuses: each kind of bad file is refused with an error that
// names the file and says what is wrong with it.
func TestLoadFilesRefuses(t *testing.T) {
	ca, err := NewCA("pool")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good, err := ca.WriteMember(dir, "h1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.WriteMember(dir, "h2")
	if err != nil {
		t.Fatal(err)
	}
	foreignCA, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := foreignCA.WriteMember(t.TempDir(), "h1")
	if err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not PEM at all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name, ca, cert, key string
		want                []string
		notExist            bool
	}{
		{"missing CA", missing, good.Cert, good.Key, []string{"CA certificate", missing}, true},
		{"CA not PEM", text, good.Cert, good.Key, []string{"CA certificate", text, "holds no PEM certificate"}, false},
		{"CA is a key", good.Key, good.Cert, good.Key, []string{"CA certificate", good.Key, "holds no PEM certificate"}, false},
		{"missing certificate", good.CA, missing, good.Key, []string{"member certificate", missing}, true},
		{"certificate not PEM", good.CA, text, good.Key, []string{"member certificate", text, "holds no PEM certificate"}, false},
		{"missing key", good.CA, good.Cert, missing, []string{"member key", missing}, true},
		{"key not PEM", good.CA, good.Cert, text, []string{"member key", text, "holds no PEM private key"}, false},
		{"key is a certificate", good.CA, good.Cert, good.Cert, []string{"member key", good.Cert, "holds no PEM private key"}, false},
		{"key of another member", good.CA, good.Cert, other.Key, []string{other.Key, "does not go with certificate", good.Cert}, false},
		{"certificate of another CA", good.CA, foreign.Cert, foreign.Key, []string{foreign.Cert, "does not verify against CA", good.CA}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadFiles(tc.ca, tc.cert, tc.key)
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.notExist != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v, want %v", err, !tc.notExist, tc.notExist)
			}
		})
	}
}
