package nfs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/run"
	"github.com/xenha/xenha/storage/nfs"
)

func mountVolume(options string) storage.Volume {
	p := map[string]string{nfs.ParamServer: "198.18.0.10", nfs.ParamExport: "/srv/vm", nfs.ParamPath: "vm1.img"}
	if options != "" {
		p[nfs.ParamOptions] = options
	}
	return storage.Volume{ID: "vm1-disk0", Kind: nfs.Kind, Generation: 3, Params: p}
}

func replay(t *testing.T, name string) *run.Replay {
	t.Helper()
	steps, err := run.ReadTranscript(filepath.Join("testdata", "host", name))
	if err != nil {
		t.Fatal(err)
	}
	return run.NewReplay(steps...)
}

// mountHost is a HostMount backend whose "mount" is a replayed transcript.
// The kernel here has no NFS client, so the image the mount would show is
// created in the mount point beforehand.
func mountHost(t *testing.T, r run.Runner, table string, withImage bool) (*nfs.Backend, string) {
	t.Helper()
	root := t.TempDir()
	if withImage {
		dir := filepath.Join(root, "vm1-disk0")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "vm1.img"), []byte("disk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if table == "" {
		table = filepath.Join("testdata", "host", "mounts-other.txt")
	}
	return nfs.New("host-a", nfs.WithMode(nfs.HostMount), nfs.WithRunner(r), nfs.WithMountRoot(root), nfs.WithMountTable(table)), root
}

func TestHostMountTranscripts(t *testing.T) {
	ctx := context.Background()
	t.Run("mount, attach again, unmount", func(t *testing.T) {
		r := replay(t, "mount-ok.txt")
		b, root := mountHost(t, r, "", true)
		src, err := b.Attach(ctx, mountVolume("nolock"))
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(root, "vm1-disk0", "vm1.img")
		if src.Type != storage.SourceFile || src.Path != want {
			t.Fatalf("source %+v, want file %s", src, want)
		}
		if _, err := b.Attach(ctx, mountVolume("nolock")); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := b.Detach(ctx, mountVolume("nolock")); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Done(); err != nil {
			t.Fatal(err)
		}
		if calls := r.Calls(); len(calls) != 2 || calls[0].Args[len(calls[0].Args)-1] != filepath.Join(root, "vm1-disk0") {
			t.Fatalf("calls %v, want one mount on the volume's directory and one umount", calls)
		}
	})
	for _, tc := range []struct {
		file, options string
		want          error
		says          string
	}{
		{"no-statd.txt", "", nil, `add "nolock"`},
		{"access-denied.txt", "nolock", storage.ErrNotFound, "refused the export"},
		{"refused.txt", "nolock", storage.ErrUnreachable, "Connection refused"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := replay(t, tc.file)
			b, _ := mountHost(t, r, "", false)
			_, err := b.Attach(ctx, mountVolume(tc.options))
			var se *storage.Error
			if !errors.As(err, &se) || se.Op != "mount" || se.Volume != "vm1-disk0" {
				t.Fatalf("err = %v, want a *storage.Error for step mount", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %q, want it to say %q", err, tc.says)
			}
			if err := r.Done(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("detach after the mount vanished", func(t *testing.T) {
		r := replay(t, "already-unmounted.txt")
		b, _ := mountHost(t, r, "", true)
		if _, err := b.Attach(ctx, mountVolume("nolock")); err != nil {
			t.Fatal(err)
		}
		if err := b.Detach(ctx, mountVolume("nolock")); err != nil {
			t.Fatalf("detach: %v, want nil for 'not mounted'", err)
		}
	})
	t.Run("busy mount is an error that says so", func(t *testing.T) {
		r := replay(t, "busy.txt")
		b, _ := mountHost(t, r, "", true)
		if _, err := b.Attach(ctx, mountVolume("nolock")); err != nil {
			t.Fatal(err)
		}
		err := b.Detach(ctx, mountVolume("nolock"))
		if err == nil || !strings.Contains(err.Error(), "is the VM stopped") {
			t.Fatalf("detach: %v", err)
		}
	})
	t.Run("mounted image missing: unmount and ErrNotFound", func(t *testing.T) {
		r := replay(t, "mount-ok.txt")
		b, _ := mountHost(t, r, "", false)
		_, err := b.Attach(ctx, mountVolume("nolock"))
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		if err := r.Done(); err != nil {
			t.Fatalf("%v: the failed attach must unmount", err)
		}
	})
	t.Run("adopt a mount left by an earlier process", func(t *testing.T) {
		r := run.NewReplay() // no commands expected
		root := t.TempDir()
		table := filepath.Join(t.TempDir(), "mounts")
		dir := filepath.Join(root, "vm1-disk0")
		line := "198.18.0.10:/srv/vm " + dir + " nfs rw,relatime,vers=3,hard,proto=tcp 0 0\n"
		if err := os.WriteFile(table, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(dir, 0o700)
		os.WriteFile(filepath.Join(dir, "vm1.img"), nil, 0o600)
		b := nfs.New("host-a", nfs.WithMode(nfs.HostMount), nfs.WithRunner(r), nfs.WithMountRoot(root), nfs.WithMountTable(table))
		if _, err := b.Attach(ctx, mountVolume("nolock")); err != nil {
			t.Fatal(err)
		}
		if len(r.Calls()) != 0 {
			t.Fatalf("calls %v, want none", r.Calls())
		}
		// A different export on the volume's directory is refused.
		other := mountVolume("nolock")
		other.Params[nfs.ParamExport] = "/srv/other"
		b2 := nfs.New("host-a", nfs.WithMode(nfs.HostMount), nfs.WithRunner(r), nfs.WithMountRoot(root), nfs.WithMountTable(table))
		if _, err := b2.Attach(ctx, other); !errors.Is(err, storage.ErrInUse) {
			t.Fatalf("err = %v, want ErrInUse", err)
		}
	})
}

func TestParseMounts(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "host", "mounts-other.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := nfs.ParseMounts(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 || m[2].Dir != "/mnt/with space" || m[2].Type != "nfs" || m[2].Source != "198.18.0.11:/srv/other" {
		t.Fatalf("mounts = %+v", m)
	}
	if _, err := nfs.ParseMounts(strings.NewReader("only three fields\n")); err == nil {
		t.Fatal("a malformed line was accepted")
	}
}

// TestConcurrentHealthAndAttach runs Health against attach/detach cycles of
// the same volume; -race checks the state they share.
func TestConcurrentHealthAndAttach(t *testing.T) {
	r := run.NewReplay(
		run.Step{Name: "mount", Args: []string{"..."}},
		run.Step{Name: "umount", Args: []string{"*"}},
	)
	r.Repeat = true
	b, _ := mountHost(t, r, "", true)
	vol := mountVolume("nolock")
	// The probe half of Health goes to a closed loopback port and fails
	// fast; the bounded stat half reads the attached state.
	vol.Params[nfs.ParamServer] = "127.0.0.1"
	vol.Params[nfs.ParamPortmapPort] = strconv.Itoa(testenv.ClosedPort(t))
	ctx := context.Background()
	done := make(chan struct{})
	hv := vol
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			err := b.Health(ctx, hv)
			if !errors.Is(err, storage.ErrUnreachable) {
				t.Errorf("health: %v", err)
				return
			}
		}
	}()
	for i := 0; i < 50; i++ {
		vol.Generation = uint64(10 + i)
		if _, err := b.Attach(ctx, vol); err != nil {
			t.Fatal(err)
		}
		if err := b.Detach(ctx, vol); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}

// hangingUmount mounts at once and hangs on a plain umount until its
// context ends, as umount of a hard NFS mount with a dead server does.
type hangingUmount struct{ forced []string }

func (h *hangingUmount) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	switch {
	case cmd.Name == "umount" && len(cmd.Args) == 1:
		<-ctx.Done()
		return run.Result{ExitCode: -1}, fmt.Errorf("run %q: %w", cmd.String(), ctx.Err())
	case cmd.Name == "umount":
		h.forced = append(h.forced, strings.Join(cmd.Args, " "))
	}
	return run.Result{}, nil
}

func TestHungUmountIsForced(t *testing.T) {
	h := &hangingUmount{}
	root := t.TempDir()
	dir := filepath.Join(root, "vm1-disk0")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vm1.img"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b := nfs.New("host-a", nfs.WithMode(nfs.HostMount), nfs.WithRunner(h), nfs.WithMountRoot(root),
		nfs.WithMountTable(filepath.Join("testdata", "host", "mounts-other.txt")), nfs.WithMountTimeout(200*time.Millisecond))
	ctx := context.Background()
	vol := mountVolume("nolock")
	if _, err := b.Attach(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := b.Detach(ctx, vol); err != nil {
		t.Fatalf("detach with a hung umount: %v", err)
	}
	if len(h.forced) != 1 || h.forced[0] != "-f -l "+dir {
		t.Fatalf("forced unmounts %q, want one umount -f -l %s", h.forced, dir)
	}
}
