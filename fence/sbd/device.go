package sbd

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/xenha/xenha/fence"
)

// Device is an open SBD device (a shared block device, or a file for tests).
// Its methods are safe for concurrent use.
type Device struct {
	path   string
	f      *os.File
	direct bool
	h      Header
}

// openFile opens path for synchronous I/O: O_DSYNC always, and O_DIRECT on
// block devices so that reads see the shared disk rather than this host's
// page cache (another host writes the pills).
func openFile(path string) (*os.File, bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, err
	}
	flags := os.O_RDWR | syscall.O_DSYNC
	direct := st.Mode()&os.ModeDevice != 0
	if direct {
		flags |= syscall.O_DIRECT
	}
	f, err := os.OpenFile(path, flags, 0)
	return f, direct, err
}

// alignedBlock returns a page-aligned BlockSize buffer, as O_DIRECT needs,
// and the function that frees it.
func alignedBlock() ([]byte, func(), error) {
	b, err := syscall.Mmap(-1, 0, BlockSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("sbd: allocate I/O buffer: %w", err)
	}
	return b, func() { _ = syscall.Munmap(b) }, nil
}

// withContext runs fn, returning early if ctx ends first. A hung device (a
// dead iSCSI path) can block I/O in the kernel for minutes; fencing must not
// wait for it. The abandoned I/O finishes or fails on its own.
func withContext(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Device) readBlock(ctx context.Context, n int) ([]byte, error) {
	out := make([]byte, BlockSize)
	err := withContext(ctx, func() error {
		buf, free, err := alignedBlock()
		if err != nil {
			return err
		}
		defer free()
		if _, err := d.f.ReadAt(buf, int64(n)*BlockSize); err != nil {
			return err
		}
		copy(out, buf)
		return nil
	})
	return out, err
}

func (d *Device) writeBlock(ctx context.Context, n int, data []byte) error {
	return withContext(ctx, func() error {
		buf, free, err := alignedBlock()
		if err != nil {
			return err
		}
		defer free()
		copy(buf, data)
		_, err = d.f.WriteAt(buf, int64(n)*BlockSize)
		return err
	})
}

// Open opens an initialised SBD device and reads its header.
func Open(ctx context.Context, path string) (*Device, error) {
	f, direct, err := openFile(path)
	if err != nil {
		return nil, fmt.Errorf("sbd: open device %s: %w", path, err)
	}
	d := &Device{path: path, f: f, direct: direct}
	b, err := d.readBlock(ctx, 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sbd: read header of %s: %w", path, err)
	}
	if d.h, err = UnmarshalHeader(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("sbd: header of %s: %w (initialise it with sbd.Create)", path, err)
	}
	return d, nil
}

// Create initialises path as an SBD device with header h and one slot per
// owner (in order), the other slots free. It destroys what the device held;
// run it once, at cluster set-up. A regular file is extended to size.
func Create(ctx context.Context, path string, h Header, owners ...string) (*Device, error) {
	h.Version = Version
	if h.UUID == ([16]byte{}) {
		if _, err := rand.Read(h.UUID[:]); err != nil {
			return nil, err
		}
	}
	if len(owners) > h.Slots {
		return nil, fmt.Errorf("sbd: %d owners for %d slots", len(owners), h.Slots)
	}
	hb, err := h.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f, direct, err := openFile(path)
	if err != nil {
		return nil, fmt.Errorf("sbd: open device %s: %w", path, err)
	}
	d := &Device{path: path, f: f, direct: direct, h: h}
	if !direct {
		if st, err := f.Stat(); err == nil && st.Size() < h.Size() {
			if err := f.Truncate(h.Size()); err != nil {
				f.Close()
				return nil, fmt.Errorf("sbd: extend %s to %d bytes: %w", path, h.Size(), err)
			}
		}
	}
	seen := map[string]bool{}
	for i := 0; i < h.Slots; i++ {
		s := Slot{Index: i}
		if i < len(owners) {
			if owners[i] == "" || seen[owners[i]] {
				f.Close()
				return nil, fmt.Errorf("sbd: owner %d (%q) is empty or repeated", i, owners[i])
			}
			seen[owners[i]] = true
			s.Owner = owners[i]
		}
		b, err := s.MarshalBinary()
		if err == nil {
			err = d.writeBlock(ctx, 1+i, b)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("sbd: write slot %d of %s: %w", i, path, err)
		}
	}
	// The header goes last: a device whose initialisation was cut short
	// has no header and is refused, rather than read with stale slots.
	if err := d.writeBlock(ctx, 0, hb); err != nil {
		f.Close()
		return nil, fmt.Errorf("sbd: write header of %s: %w", path, err)
	}
	return d, nil
}

// Header returns the header read when the device was opened.
func (d *Device) Header() Header { return d.h }

// Path returns the device's path.
func (d *Device) Path() string { return d.path }

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }

// Slot reads slot i.
func (d *Device) Slot(ctx context.Context, i int) (Slot, error) {
	if i < 0 || i >= d.h.Slots {
		return Slot{}, fmt.Errorf("sbd: slot %d out of range (device has %d)", i, d.h.Slots)
	}
	b, err := d.readBlock(ctx, 1+i)
	if err != nil {
		return Slot{}, fmt.Errorf("sbd: read slot %d of %s: %w", i, d.path, err)
	}
	s, err := UnmarshalSlot(b, i)
	if err != nil {
		return Slot{}, fmt.Errorf("sbd: slot %d of %s: %w", i, d.path, err)
	}
	return s, nil
}

// Slots reads every slot.
func (d *Device) Slots(ctx context.Context) ([]Slot, error) {
	out := make([]Slot, 0, d.h.Slots)
	for i := 0; i < d.h.Slots; i++ {
		s, err := d.Slot(ctx, i)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Find returns the host's slot, or an error wrapping ErrNoSlot.
func (d *Device) Find(ctx context.Context, host string) (Slot, error) {
	slots, err := d.Slots(ctx)
	if err != nil {
		return Slot{}, err
	}
	for _, s := range slots {
		if s.Owner == host {
			return s, nil
		}
	}
	return Slot{}, fmt.Errorf("sbd: %s has no slot for host %q: %w", d.path, host, ErrNoSlot)
}

// Allocate gives host a free slot, or returns its existing one. Allocate
// slots at set-up: two hosts allocating at the same moment could race.
func (d *Device) Allocate(ctx context.Context, host string) (Slot, error) {
	if host == "" || len(host) > MaxName {
		return Slot{}, fmt.Errorf("sbd: host name %q must be 1-%d bytes", host, MaxName)
	}
	slots, err := d.Slots(ctx)
	if err != nil {
		return Slot{}, err
	}
	for _, s := range slots {
		if s.Owner == host {
			return s, nil
		}
	}
	for _, s := range slots {
		if s.Owner == "" {
			s = Slot{Index: s.Index, Owner: host}
			return s, d.put(ctx, s)
		}
	}
	return Slot{}, fmt.Errorf("sbd: all %d slots of %s are taken: %w", d.h.Slots, d.path, ErrNoSlot)
}

// Send writes a message into host's slot and reads it back. It returns the
// slot as written.
func (d *Device) Send(ctx context.Context, host string, m MessageType, sender string) (Slot, error) {
	s, err := d.Find(ctx, host)
	if err != nil {
		return Slot{}, err
	}
	s.Type, s.Sender, s.Seq, s.Time = m, sender, s.Seq+1, time.Now()
	if err := d.put(ctx, s); err != nil {
		return Slot{}, err
	}
	back, err := d.Slot(ctx, s.Index)
	if err != nil {
		return Slot{}, fmt.Errorf("sbd: read back slot %d after writing: %w", s.Index, err)
	}
	if back.Seq != s.Seq || back.Type != m || back.Owner != host {
		return Slot{}, fmt.Errorf("sbd: slot %d of %s reads back %s seq %d, wrote %s seq %d (another writer?)", s.Index, d.path, back.Type, back.Seq, m, s.Seq)
	}
	return back, nil
}

func (d *Device) put(ctx context.Context, s Slot) error {
	b, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	if err := d.writeBlock(ctx, 1+s.Index, b); err != nil {
		return fmt.Errorf("sbd: write slot %d of %s: %w", s.Index, d.path, err)
	}
	return nil
}

// unreachable marks I/O failures (as opposed to bad content) for fencing.
func unreachable(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrNoSlot) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotSBD) || errors.Is(err, ErrVersion) {
		return err
	}
	return fmt.Errorf("%w: %w", fence.ErrUnreachable, err)
}
