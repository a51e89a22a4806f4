package iscsi_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/run"
	"github.com/xenha/xenha/storage/iscsi"
)

func hostVolume(gen uint64) storage.Volume {
	return storage.Volume{ID: "vm1-disk0", Kind: iscsi.Kind, Generation: gen, Params: map[string]string{
		iscsi.ParamPortal: "198.18.0.10", iscsi.ParamIQN: "iqn.2026-11.test.xenha:vm1", iscsi.ParamLUN: "1",
	}}
}

// replay loads a recorded transcript from testdata/host.
func replay(t *testing.T, name string) *run.Replay {
	t.Helper()
	steps, err := run.ReadTranscript(filepath.Join("testdata", "host", name))
	if err != nil {
		t.Fatal(err)
	}
	return run.NewReplay(steps...)
}

func hostBackend(r run.Runner) *iscsi.Backend {
	return iscsi.New("host-a", iscsi.WithMode(iscsi.HostLogin), iscsi.WithRunner(r), iscsi.WithDeviceWait(2*time.Second))
}

func TestHostLoginTranscripts(t *testing.T) {
	ctx := context.Background()
	t.Run("fresh attach registers and reserves, detach releases", func(t *testing.T) {
		r := replay(t, "attach-fresh.txt")
		b := hostBackend(r)
		src, err := b.Attach(ctx, hostVolume(1))
		if err != nil {
			t.Fatal(err)
		}
		if src.Type != storage.SourceBlock || src.Path != "/dev/sdb" {
			t.Fatalf("source %+v, want block /dev/sdb (LUN 1 of vm1, not sda of the other target)", src)
		}
		again, err := b.Attach(ctx, hostVolume(1))
		if err != nil || !reflect.DeepEqual(again, src) {
			t.Fatalf("second attach = %+v, %v; want the same source after confirming the reservation", again, err)
		}
		for i := 0; i < 2; i++ {
			if err := b.Detach(ctx, hostVolume(1)); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Done(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Attach(ctx, hostVolume(0)); !errors.Is(err, storage.ErrStaleGeneration) {
			t.Fatalf("attach at generation 0 after 1: %v, want ErrStaleGeneration before any command", err)
		}
	})
	t.Run("take-over preempts the older key once", func(t *testing.T) {
		r := replay(t, "takeover.txt")
		src, err := hostBackend(r).Attach(ctx, hostVolume(5))
		if err != nil || src.Path != "/dev/sdc" {
			t.Fatalf("attach = %+v, %v", src, err)
		}
		if err := r.Done(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("take-over falls back to PREEMPT", func(t *testing.T) {
		r := replay(t, "takeover-no-abort.txt")
		src, err := hostBackend(r).Attach(ctx, hostVolume(2))
		if err != nil || src.Path != "/dev/sdd" {
			t.Fatalf("attach = %+v, %v", src, err)
		}
		if err := r.Done(); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct {
		file string
		gen  uint64
		want error
		op   string
		says string
	}{
		{"stale.txt", 5, storage.ErrStaleGeneration, "reserve", "newer generation"},
		{"raced-newer.txt", 6, storage.ErrStaleGeneration, "reserve", "newer generation"},
		{"in-use.txt", 5, storage.ErrInUse, "reserve", "already held"},
		{"not-offered.txt", 1, storage.ErrNotFound, "discovery", "does not offer"},
		{"no-initiator.txt", 1, nil, "discovery", "iscsi_tcp kernel module is missing"},
		{"malformed-session.txt", 1, nil, "login", "outside a session"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := replay(t, tc.file)
			_, err := hostBackend(r).Attach(ctx, hostVolume(tc.gen))
			if err == nil {
				t.Fatal("attach succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var se *storage.Error
			if !errors.As(err, &se) || se.Op != tc.op || se.Host != "host-a" || se.Volume != "vm1-disk0" {
				t.Fatalf("err = %#v, want a *storage.Error for step %q", err, tc.op)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %q, want it to say %q", err, tc.says)
			}
			if err := r.Done(); err != nil {
				t.Fatalf("%v (the attach stopped early or issued other commands)", err)
			}
		})
	}
	t.Run("detach after being preempted", func(t *testing.T) {
		r := replay(t, "detach-after-preempt.txt")
		b := hostBackend(r)
		if _, err := b.Attach(ctx, hostVolume(2)); err != nil {
			t.Fatal(err)
		}
		if err := b.Detach(ctx, hostVolume(2)); err != nil {
			t.Fatalf("detach of a preempted volume: %v, want nil", err)
		}
		if err := r.Done(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("generation 0 is not a key", func(t *testing.T) {
		r := run.NewReplay()
		_, err := hostBackend(r).Attach(ctx, hostVolume(0))
		if !errors.Is(err, storage.ErrInvalidVolume) || len(r.Calls()) != 0 {
			t.Fatalf("err = %v after %d commands, want ErrInvalidVolume and none", err, len(r.Calls()))
		}
	})
}
