package nfs_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/nfs"
)

func TestProbeAgainstGanesha(t *testing.T) {
	g := startGanesha(t)
	g.Disk(t, "vm1.img", 48<<20)
	g.Disk(t, "pool/vm2.img", 1<<20+4096)

	t.Run("through rpcbind", func(t *testing.T) {
		a, err := nfs.Probe(ctxT(t), "127.0.0.1", g.Export, "vm1.img")
		if err != nil {
			t.Fatal(err)
		}
		if a.Type != nfs.TypeRegular || a.Size != 48<<20 {
			t.Fatalf("attr = %+v, want a regular file of %d bytes", a, 48<<20)
		}
	})
	t.Run("configured ports and a nested path", func(t *testing.T) {
		a, err := nfs.Probe(ctxT(t), "127.0.0.1", g.Export, "pool/vm2.img",
			nfs.WithMountPort(g.MountPort), nfs.WithNFSPort(g.NFSPort))
		if err != nil {
			t.Fatal(err)
		}
		if a.Size != 1<<20+4096 {
			t.Fatalf("size = %d, want %d", a.Size, 1<<20+4096)
		}
	})
	t.Run("the export root", func(t *testing.T) {
		a, err := nfs.Probe(ctxT(t), "127.0.0.1", g.Export, "")
		if err != nil || a.Type != nfs.TypeDirectory {
			t.Fatalf("attr = %+v, err = %v; want a directory", a, err)
		}
	})
	t.Run("wrong export is ErrNotFound", func(t *testing.T) {
		_, err := nfs.Probe(ctxT(t), "127.0.0.1", g.Export+"-nosuch", "vm1.img")
		var me *nfs.MountError
		if !errors.Is(err, storage.ErrNotFound) || !errors.As(err, &me) {
			t.Fatalf("err = %v, want ErrNotFound from a *MountError", err)
		}
	})
	t.Run("missing disk is ErrNotFound", func(t *testing.T) {
		_, err := nfs.Probe(ctxT(t), "127.0.0.1", g.Export, "vm9.img")
		var se *nfs.StatusError
		if !errors.Is(err, storage.ErrNotFound) || !errors.As(err, &se) || se.Status != 2 {
			t.Fatalf("err = %v, want ErrNotFound from NFS3ERR_NOENT", err)
		}
	})
}

func TestProbeUnreachable(t *testing.T) {
	t.Run("nothing listening", func(t *testing.T) {
		port := testenv.ClosedPort(t)
		_, err := nfs.Probe(ctxT(t), "127.0.0.1:"+strconv.Itoa(port), "/export", "disk.img")
		if !errors.Is(err, storage.ErrUnreachable) {
			t.Fatalf("err = %v, want ErrUnreachable", err)
		}
	})
	t.Run("hung server", func(t *testing.T) {
		_, err := nfs.Probe(ctxT(t), testenv.SilentServer(t), "/export", "disk.img", nfs.WithProbeTimeout(300*time.Millisecond))
		if !errors.Is(err, storage.ErrUnreachable) {
			t.Fatalf("err = %v, want ErrUnreachable", err)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct{ server, export, disk string }{
			{"", "/e", "d"}, {"127.0.0.1", "relative", "d"}, {"127.0.0.1:x", "/e", "d"},
		} {
			if _, err := nfs.Probe(ctxT(t), tc.server, tc.export, tc.disk); !errors.Is(err, storage.ErrInvalidVolume) {
				t.Errorf("Probe(%q, %q, %q) = %v, want ErrInvalidVolume", tc.server, tc.export, tc.disk, err)
			}
		}
	})
}

// TestProbeHungServer freezes a real nfs-ganesha: the probe must give up
// with storage.ErrUnreachable within its timeout, and succeed once it thaws.
func TestProbeHungServer(t *testing.T) {
	g := startGanesha(t)
	g.Disk(t, "vm1.img", 1<<20)
	opts := []nfs.ProbeOption{nfs.WithMountPort(g.MountPort), nfs.WithNFSPort(g.NFSPort)}
	thaw := g.Freeze(t)
	_, err := nfs.Probe(ctxT(t), "127.0.0.1", g.Export, "vm1.img", append(opts, nfs.WithProbeTimeout(300*time.Millisecond))...)
	thaw()
	if !errors.Is(err, storage.ErrUnreachable) {
		t.Fatalf("probe of a frozen ganesha: %v, want ErrUnreachable", err)
	}
	if _, err := nfs.Probe(ctxT(t), "127.0.0.1", g.Export, "vm1.img", opts...); err != nil {
		t.Fatalf("probe after thaw: %v", err)
	}
}
