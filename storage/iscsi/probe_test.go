package iscsi_test

import (
	"errors"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/iscsi"
)

func TestProbeAgainstTgtd(t *testing.T) {
	g := startTgtd(t)
	const iqn1, iqn2 = "iqn.2026-11.test.xenha:vm1", "iqn.2026-11.test.xenha:vm2"
	g.AddTarget(1, iqn1, 64<<20)
	g.AddTarget(2, iqn2, 3<<20+512)

	t.Run("discovery lists both targets", func(t *testing.T) {
		got, err := iscsi.Discover(ctxT(t), g.Portal)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, tg := range got {
			names[tg.Name] = true
			if len(tg.Addresses) == 0 {
				t.Errorf("target %s: no TargetAddress", tg.Name)
			}
		}
		if !names[iqn1] || !names[iqn2] || len(got) != 2 {
			t.Fatalf("discovery = %+v, want %s and %s", got, iqn1, iqn2)
		}
	})
	t.Run("read capacity is the backing file size", func(t *testing.T) {
		for iqn, size := range map[string]uint64{iqn1: 64 << 20, iqn2: 3<<20 + 512} {
			c, err := iscsi.ReadCapacity(ctxT(t), g.Portal, iqn, 1)
			if err != nil {
				t.Fatalf("%s: %v", iqn, err)
			}
			if c.Bytes() != size || c.BlockSize != 512 {
				t.Errorf("%s: capacity %+v = %d bytes, want %d in 512-byte blocks", iqn, c, c.Bytes(), size)
			}
		}
	})
	t.Run("wrong IQN is ErrNotFound", func(t *testing.T) {
		_, err := iscsi.ReadCapacity(ctxT(t), g.Portal, "iqn.2026-11.test.xenha:nosuch", 1)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		var le *iscsi.LoginError
		if !errors.As(err, &le) || le.Class != 2 {
			t.Fatalf("err = %v, want a *LoginError with an initiator-error class", err)
		}
	})
	t.Run("missing LUN is ErrNotFound", func(t *testing.T) {
		_, err := iscsi.ReadCapacity(ctxT(t), g.Portal, iqn1, 7)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
}

func TestProbeUnreachable(t *testing.T) {
	t.Run("closed port", func(t *testing.T) {
		_, err := iscsi.ReadCapacity(ctxT(t), closedPort(t), "iqn.2026-11.test.xenha:vm1", 1)
		if !errors.Is(err, storage.ErrUnreachable) {
			t.Fatalf("err = %v, want ErrUnreachable", err)
		}
		if _, err := iscsi.Discover(ctxT(t), closedPort(t)); !errors.Is(err, storage.ErrUnreachable) {
			t.Fatalf("discover err = %v, want ErrUnreachable", err)
		}
	})
	t.Run("silent target", func(t *testing.T) {
		// Accepts the connection and never answers: a hung target.
		_, err := iscsi.ReadCapacity(ctxT(t), testenv.SilentServer(t), "iqn.2026-11.test.xenha:vm1", 1,
			iscsi.WithProbeTimeout(300*time.Millisecond))
		if !errors.Is(err, storage.ErrUnreachable) {
			t.Fatalf("err = %v, want ErrUnreachable", err)
		}
	})
}

// TestProbeHungTarget freezes a real tgtd: the probe must give up with
// storage.ErrUnreachable within its timeout, and succeed once it thaws.
func TestProbeHungTarget(t *testing.T) {
	g := startTgtd(t)
	const iqn = "iqn.2026-11.test.xenha:frozen"
	g.AddTarget(1, iqn, 1<<20)
	thaw := g.Freeze()
	_, err := iscsi.ReadCapacity(ctxT(t), g.Portal, iqn, 1, iscsi.WithProbeTimeout(300*time.Millisecond))
	thaw()
	if !errors.Is(err, storage.ErrUnreachable) {
		t.Fatalf("probe of a frozen tgtd: %v, want ErrUnreachable", err)
	}
	if _, err := iscsi.ReadCapacity(ctxT(t), g.Portal, iqn, 1); err != nil {
		t.Fatalf("probe after thaw: %v", err)
	}
}
