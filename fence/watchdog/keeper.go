package watchdog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Linux watchdog ioctls (linux/watchdog.h): _IOR/_IOWR('W', n, int).
const (
	wdiocSetTimeout = 0xc0045706
	wdiocGetTimeout = 0x80045707
)

// magicClose tells a Linux watchdog driver that the close that follows is
// deliberate, so it disarms instead of firing.
const magicClose = 'V'

// keepAlive is what a pet writes. Any byte but 'V' will do.
var keepAlive = []byte{'.'}

// Errors callers branch on.
var (
	// ErrNotWatchdog: the character device does not take watchdog ioctls.
	ErrNotWatchdog = errors.New("watchdog: device does not support watchdog ioctls")
	// ErrClosed: Run stopped because the keeper was closed.
	ErrClosed = errors.New("watchdog: keeper closed")
)

// Keeper feeds a watchdog device while the host's lease is valid.
type Keeper struct {
	path    string
	f       *os.File
	timeout time.Duration
	pet     time.Duration
	isDev   bool
	log     *slog.Logger

	mu      sync.Mutex
	sources map[string]time.Time // feeding deadline per source; the earliest rules
	closed  bool
	pets    int
	last    time.Time
	wake    chan struct{}
}

// KeeperOption configures a Keeper.
type KeeperOption func(*Keeper)

// WithTimeout sets the watchdog timeout. On a watchdog character device it
// is programmed with WDIOC_SETTIMEOUT (whole seconds; the driver's actual
// value is read back); for a file or FIFO it is only recorded. Default 10s.
func WithTimeout(d time.Duration) KeeperOption { return func(k *Keeper) { k.timeout = d } }

// WithPetInterval sets how often to write a keep-alive while the lease is
// valid (default a quarter of the timeout).
func WithPetInterval(d time.Duration) KeeperOption { return func(k *Keeper) { k.pet = d } }

// WithLogger logs arming, lapses and stops.
func WithLogger(l *slog.Logger) KeeperOption { return func(k *Keeper) { k.log = l } }

// Open opens the watchdog device at path and arms it (opening a Linux
// watchdog device starts it). It does not create path. Open it when the host
// first holds a lease, and Feed it at once: an armed device that is not fed
// resets the host one timeout later, which is right for a host that lost
// its lease but would reboot-loop a host still joining.
func Open(path string, opts ...KeeperOption) (*Keeper, error) {
	k := &Keeper{path: path, timeout: 10 * time.Second, log: slog.New(slog.NewTextHandler(io.Discard, nil)), wake: make(chan struct{}, 1)}
	for _, o := range opts {
		o(k)
	}
	if k.timeout <= 0 {
		return nil, fmt.Errorf("watchdog: timeout %s must be positive", k.timeout)
	}
	if k.pet == 0 {
		k.pet = k.timeout / 4
	}
	if k.pet <= 0 || k.pet >= k.timeout {
		return nil, fmt.Errorf("watchdog: pet interval %s must be positive and shorter than the timeout %s", k.pet, k.timeout)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("watchdog: device %s: %w (is the watchdog driver loaded?)", path, err)
	}
	flags := os.O_WRONLY
	k.isDev = st.Mode()&os.ModeCharDevice != 0
	if st.Mode().IsRegular() {
		flags |= os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog: open %s: %w", path, err)
	}
	k.f = f
	if k.isDev {
		if err := k.program(); err != nil {
			// Disarm what opening armed: this host never ran under it.
			_, _ = f.Write([]byte{magicClose})
			f.Close()
			return nil, err
		}
	}
	k.log.Info("watchdog armed", "device", path, "timeout", k.timeout, "pet", k.pet)
	return k, nil
}

// program sets the device's timeout and reads back what the driver chose.
func (k *Keeper) program() error {
	secs := int32((k.timeout + time.Second - 1) / time.Second)
	if err := ioctl(k.f, wdiocSetTimeout, &secs); err != nil {
		if errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("watchdog: %s: WDIOC_SETTIMEOUT: %w (%v)", k.path, ErrNotWatchdog, err)
		}
		return fmt.Errorf("watchdog: %s: set timeout %ds: %w", k.path, secs, err)
	}
	var got int32
	if err := ioctl(k.f, wdiocGetTimeout, &got); err == nil && got > 0 {
		secs = got
	}
	k.timeout = time.Duration(secs) * time.Second
	if k.pet >= k.timeout {
		k.pet = k.timeout / 4
	}
	return nil
}

func ioctl(f *os.File, req uintptr, arg *int32) error {
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(arg)))
	if errno != 0 {
		return errno
	}
	return nil
}

// Timeout is the watchdog timeout in force (as the driver set it).
func (k *Keeper) Timeout() time.Duration { return k.timeout }

// PetInterval is the keep-alive period.
func (k *Keeper) PetInterval() time.Duration { return k.pet }

// LeaseSource is the source Feed feeds.
const LeaseSource = "lease"

// Feed lets the keeper pet the device until the given time: call it with the
// lease's expiry each time a renewal is committed. An earlier time than
// before shortens the feeding (a revoked lease); the zero time stops it.
// It is FeedSource(LeaseSource, until).
func (k *Keeper) Feed(until time.Time) { k.FeedSource(LeaseSource, until) }

// FeedSource sets the feeding deadline of one named source. The keeper pets
// only while every source that was ever fed is within its deadline: a host
// that fences itself through the watchdog for several reasons (its lease,
// an SBD watcher's health) feeds each as its own source, and any one lapsing
// stops the keep-alives.
func (k *Keeper) FeedSource(source string, until time.Time) {
	k.mu.Lock()
	if k.sources == nil {
		k.sources = map[string]time.Time{}
	}
	k.sources[source] = until
	k.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// FedUntil returns the current feeding deadline: the earliest of the
// sources' (zero before any feeding).
func (k *Keeper) FedUntil() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	until, _ := k.deadline()
	return until
}

// deadline returns the earliest source deadline and its source. Call with
// k.mu held.
func (k *Keeper) deadline() (time.Time, string) {
	var until time.Time
	var which string
	first := true
	for s, u := range k.sources {
		if first || u.Before(until) {
			until, which, first = u, s, false
		}
	}
	return until, which
}

// Pets returns how many keep-alives were written and when the last was.
func (k *Keeper) Pets() (int, time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pets, k.last
}

// Run pets the device every pet interval while now is before the feeding
// deadline, until ctx ends. It never pets after the deadline, so the device
// fires at most one timeout after it. Run does not disarm the device when
// ctx ends: only Close does, deliberately.
func (k *Keeper) Run(ctx context.Context) error {
	t := time.NewTicker(k.pet)
	defer t.Stop()
	lapsed := false
	for {
		k.mu.Lock()
		until, source := k.deadline()
		closed := k.closed
		k.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if now := time.Now(); now.Before(until) {
			if err := k.petOnce(); err != nil {
				return err
			}
			lapsed = false
		} else if !lapsed {
			lapsed = true
			k.log.Error("feeding lapsed: no longer petting the watchdog; it will reset this host", "source", source, "device", k.path, "fed until", until, "timeout", k.timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-k.wake:
		}
	}
}

func (k *Keeper) petOnce() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	if _, err := k.f.Write(keepAlive); err != nil {
		return fmt.Errorf("watchdog: keep-alive to %s: %w", k.path, err)
	}
	k.pets++
	k.last = time.Now()
	return nil
}

// Close disarms the device with the magic close character and closes it.
// Call it only on a clean stop, when this host no longer runs VMs: a
// disarmed host is no longer self-fencing.
func (k *Keeper) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	_, werr := k.f.Write([]byte{magicClose})
	cerr := k.f.Close()
	if werr != nil {
		return fmt.Errorf("watchdog: magic close of %s: %w (the device may still fire)", k.path, werr)
	}
	return cerr
}
