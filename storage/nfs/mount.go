package nfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/run"
)

// mount(8) exit status for a mount failure (util-linux, mount.nfs).
const mountFailure = 32

// DefaultMountTimeout bounds mount(8): with "hard", mount.nfs retries a
// silent server for minutes.
const DefaultMountTimeout = 30 * time.Second

// attachMount mounts server:export under the mount root (or adopts a mount
// an earlier process left there) and checks the image through it.
func (b *Backend) attachMount(ctx context.Context, vol storage.Volume, s share) (string, storage.Source, error) {
	dir := filepath.Join(b.mountRoot, vol.ID)
	spec := s.server + ":" + s.export
	mounts, err := readMounts(b.mountTable)
	if err != nil {
		return "", storage.Source{}, err
	}
	var adopted bool
	for _, m := range mounts {
		if m.Dir != dir {
			continue
		}
		if (m.Type != "nfs" && m.Type != "nfs4") || m.Source != spec {
			return "", storage.Source{}, fmt.Errorf("%s already has %s mounted (%s); unmount it or choose another volume ID: %w", dir, m.Source, m.Type, storage.ErrInUse)
		}
		adopted = true
	}
	if !adopted {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", storage.Source{}, fmt.Errorf("create mount point: %w", err)
		}
		opts := DefaultMountOptions
		if s.options != "" {
			opts += "," + s.options
		}
		mctx, cancel := context.WithTimeout(ctx, b.mountTimeout)
		_, err := b.runner.Run(mctx, run.Command("mount", "-t", "nfs", "-o", opts, spec, dir))
		cancel()
		if err != nil {
			return "", storage.Source{}, mountErr(ctx, spec, dir, err)
		}
	}
	file := filepath.Join(dir, filepath.FromSlash(s.disk))
	if err := b.boundedStat(ctx, file); err != nil {
		if !adopted {
			_ = b.unmount(context.WithoutCancel(ctx), dir)
		}
		return "", storage.Source{}, err
	}
	return dir, storage.Source{Type: storage.SourceFile, Path: file}, nil
}

// mountErr classifies what mount.nfs said, so the caller can branch and the
// operator knows what to fix.
func mountErr(ctx context.Context, spec, dir string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("mount %s on %s: %w: %w", spec, dir, storage.ErrUnreachable, ctx.Err())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("mount %s on %s did not finish in time; the server does not answer (mount hung): %w", spec, dir, storage.ErrUnreachable)
	}
	var xe *run.ExitError
	if !errors.As(err, &xe) {
		return fmt.Errorf("mount %s on %s: %w", spec, dir, err)
	}
	msg := strings.ToLower(xe.Stderr)
	switch {
	case strings.Contains(msg, "rpc.statd is not running"):
		return fmt.Errorf("mount %s on %s: rpc.statd is not running; start it, or add \"nolock\" to the volume's %q (locks stay local, xenha's generations keep one writer): %w", spec, dir, ParamOptions, err)
	case strings.Contains(msg, "access denied") || strings.Contains(msg, "no such file or directory") || strings.Contains(msg, "permission denied"):
		return fmt.Errorf("mount %s on %s: the server refused the export: %w (%v)", spec, dir, storage.ErrNotFound, err)
	case strings.Contains(msg, "connection refused") || strings.Contains(msg, "timed out") || strings.Contains(msg, "no route to host") || strings.Contains(msg, "unreachable"):
		return fmt.Errorf("mount %s on %s: %w (%v)", spec, dir, storage.ErrUnreachable, err)
	}
	return fmt.Errorf("mount %s on %s: %w", spec, dir, err)
}

// unmount unmounts dir; "not mounted" is success. umount of a hard mount
// whose server is gone blocks in the kernel; after DefaultMountTimeout the
// backend forces it and detaches it lazily (umount -f -l), which is safe
// because Detach runs after the VM using the image has stopped.
func (b *Backend) unmount(ctx context.Context, dir string) error {
	uctx, cancel := context.WithTimeout(ctx, b.mountTimeout)
	_, err := b.runner.Run(uctx, run.Command("umount", dir))
	cancel()
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		b.log.LogAttrs(ctx, slog.LevelWarn, "umount hung; forcing a lazy unmount", slog.String("dir", dir))
		fctx, cancel := context.WithTimeout(ctx, b.mountTimeout)
		_, err = b.runner.Run(fctx, run.Command("umount", "-f", "-l", dir))
		cancel()
		if err != nil {
			return fmt.Errorf("umount %s hung, and so did umount -f -l: %w: %w", dir, storage.ErrUnreachable, err)
		}
	}
	if err == nil {
		_ = os.Remove(dir)
		return nil
	}
	var xe *run.ExitError
	if errors.As(err, &xe) && strings.Contains(xe.Stderr, "not mounted") {
		_ = os.Remove(dir)
		return nil
	}
	if errors.As(err, &xe) && strings.Contains(xe.Stderr, "target is busy") {
		return fmt.Errorf("umount %s: still in use (is the VM stopped?): %w", dir, err)
	}
	return fmt.Errorf("umount %s: %w", dir, err)
}

func statFile(name string) error {
	fi, err := os.Stat(name)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%v)", name, fi.Mode().Type())
	}
	return nil
}

// hung remembers stats that never returned. A stat on a hung hard mount
// sleeps in the kernel and cannot be interrupted, so its goroutine is left
// behind; while it is stuck, later probes of the same file report the hang
// at once instead of leaving one more goroutine each.
var hung sync.Map // file name -> struct{}

// boundedStat stats file but gives up after the stat timeout or when ctx
// ends: a hung NFS mount is reported as storage.ErrUnreachable, not waited
// on.
func (b *Backend) boundedStat(ctx context.Context, file string) error {
	if _, stuck := hung.Load(file); stuck {
		return fmt.Errorf("stat %s: an earlier stat is still blocked; the mount is hung: %w", file, storage.ErrUnreachable)
	}
	done := make(chan error, 1)
	stat := b.stat
	go func() {
		err := stat(file)
		hung.Delete(file)
		done <- err
	}()
	timer := time.NewTimer(b.statTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("disk image %s does not exist on the mounted export: %w", file, storage.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", file, err)
		}
		return nil
	case <-timer.C:
		hung.Store(file, struct{}{})
		return fmt.Errorf("stat %s: no answer in %v; the mount is hung (server down or unreachable): %w", file, b.statTimeout, storage.ErrUnreachable)
	case <-ctx.Done():
		hung.Store(file, struct{}{})
		return fmt.Errorf("stat %s: mount hung until the caller gave up: %w: %w", file, storage.ErrUnreachable, ctx.Err())
	}
}

// MountEntry is one line of a mount table (/proc/self/mounts).
type MountEntry struct {
	Source, Dir, Type, Options string
}

func readMounts(file string) ([]MountEntry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return ParseMounts(f)
}

// ParseMounts reads a mount table in the /proc/self/mounts format: six
// blank-separated fields, with blanks, tabs, newlines and backslashes in
// names escaped as octal (\040).
func ParseMounts(r io.Reader) ([]MountEntry, error) {
	var out []MountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 6 {
			return nil, fmt.Errorf("mount table line %d: %d fields, want 6: %q", n, len(f), line)
		}
		e := MountEntry{Source: unescapeMount(f[0]), Dir: unescapeMount(f[1]), Type: f[2], Options: f[3]}
		out = append(out, e)
	}
	return out, sc.Err()
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
