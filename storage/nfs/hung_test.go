package nfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/run"
)

// TestHungMount stands in for a hard NFS mount whose server died: the stat
// through it never returns. The kernel here has no NFS client, so the stat
// is replaced by one that blocks until the test ends, as the kernel's would
// until the server came back.
func TestHungMount(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var hang bool
	root := t.TempDir()
	dir := filepath.Join(root, "vm1-disk0")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vm1.img"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	table := filepath.Join(t.TempDir(), "mounts")
	if err := os.WriteFile(table, []byte("198.18.0.10:/srv/vm "+dir+" nfs rw,vers=3 0 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := New("host-a", WithMode(HostMount), WithRunner(run.NewReplay()), WithMountRoot(root), WithMountTable(table),
		WithStatTimeout(200*time.Millisecond))
	b.stat = func(name string) error {
		if hang {
			<-release
		}
		return statFile(name)
	}
	vol := storage.Volume{ID: "vm1-disk0", Kind: Kind, Generation: 1, Params: map[string]string{
		ParamServer: "198.18.0.10", ParamExport: "/srv/vm", ParamPath: "vm1.img"}}
	if _, err := b.Attach(context.Background(), vol); err != nil {
		t.Fatal(err)
	}
	hang = true
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.Health(ctx, vol)
		cancel()
		if !errors.Is(err, storage.ErrUnreachable) {
			t.Fatalf("health #%d of a hung mount: %v, want ErrUnreachable", i+1, err)
		}
		var se *storage.Error
		if !errors.As(err, &se) || se.Op != "probe" {
			t.Fatalf("err = %v, want a *storage.Error", err)
		}
		t.Logf("health #%d: %v", i+1, err)
	}
	// Caller's deadline shorter than the stat timeout: still bounded.
	b.statTimeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	hung.Delete(filepath.Join(dir, "vm1.img"))
	if err := b.boundedStat(ctx, filepath.Join(dir, "vm1.img")); !errors.Is(err, storage.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUnreachable and DeadlineExceeded", err)
	}
}
