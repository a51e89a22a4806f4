package sbd_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/fence/sbd"
)

func fencetestRun(t *testing.T, dev string) {
	fencetest.Run(t, func(t *testing.T) fencetest.Subject {
		d, err := sbd.Create(t.Context(), dev, testHeader, "host-a", "host-b")
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		v := startVictim(t, dev, "host-b")
		f, err := sbd.New("host-a", map[string][]string{"host-b": {dev}, "dead": {filepath.Join(t.TempDir(), "missing")}})
		if err != nil {
			t.Fatal(err)
		}
		return fencetest.Subject{Fencer: f, Host: "host-b", Unreachable: "dead",
			IsOff: func(context.Context) (bool, error) { return v.isDown(), nil }}
	})
}

func writeEmpty(path string) error { return os.WriteFile(path, nil, 0o600) }
