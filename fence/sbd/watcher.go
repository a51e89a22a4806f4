package sbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// ErrFenced is returned by Watcher.Run after it fenced its host.
var ErrFenced = errors.New("sbd: host fenced itself")

// Reason says why a watcher fenced its host.
type Reason int

// Reasons.
const (
	// ReasonPill: the host's slot holds an off or reset message.
	ReasonPill Reason = iota + 1
	// ReasonDeviceLost: the slot could not be read for longer than the
	// watchdog timeout, so a pill might be there unseen.
	ReasonDeviceLost
)

func (r Reason) String() string {
	switch r {
	case ReasonPill:
		return "poison pill"
	case ReasonDeviceLost:
		return "device lost"
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Event is passed to the watcher's fence callback.
type Event struct {
	Reason Reason
	Slot   Slot  // the slot as last read (the pill, for ReasonPill)
	Err    error // the last read error, for ReasonDeviceLost
}

// Watcher runs on the victim: it reads its host's slot every loop interval
// and fences the host (calls its callback: in production, stop feeding the
// watchdog and reboot or power off) when it finds a pill, or when it could
// not read the slot for longer than the watchdog timeout.
type Watcher struct {
	path    string
	host    string
	onFence func(Event)
	log     *slog.Logger
	onRead  func(Slot)
}

// WatcherOption configures a Watcher.
type WatcherOption func(*Watcher)

// WithWatcherLogger logs reads and errors.
func WithWatcherLogger(l *slog.Logger) WatcherOption { return func(w *Watcher) { w.log = l } }

// OnRead is called after each successful read (tests; health reporting).
func OnRead(f func(Slot)) WatcherOption { return func(w *Watcher) { w.onRead = f } }

// NewWatcher returns a watcher for host's slot on the device at path.
// onFence must fence the host; it is called at most once per Run.
func NewWatcher(path, host string, onFence func(Event), opts ...WatcherOption) (*Watcher, error) {
	if path == "" || host == "" || onFence == nil {
		return nil, errors.New("sbd: watcher needs a device path, a host and a fence callback")
	}
	w := &Watcher{path: path, host: host, onFence: onFence, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(w)
	}
	return w, nil
}

// Run opens the device and watches the slot until ctx ends (returning
// ctx's error) or the host is fenced (ErrFenced, after the callback ran). A
// device that cannot be opened, or has no slot for the host, is an error
// at once: start the watcher before the host starts VMs.
func (w *Watcher) Run(ctx context.Context) error {
	d, err := Open(ctx, w.path)
	if err != nil {
		return err
	}
	defer d.Close()
	h := d.Header()
	s, err := d.Find(ctx, w.host)
	if err != nil {
		return err
	}
	index := s.Index
	lastOK := time.Now()
	tick := time.NewTicker(h.Loop)
	defer tick.Stop()
	for {
		// Each read gets at most one loop interval so a hung device is
		// noticed by the lost-device check below.
		rctx, cancel := context.WithTimeout(ctx, h.Loop)
		s, err := d.Slot(rctx, index)
		cancel()
		if err == nil && s.Owner != w.host {
			err = fmt.Errorf("sbd: slot %d now belongs to %q, not %q", index, s.Owner, w.host)
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			lastOK = time.Now()
			if w.onRead != nil {
				w.onRead(s)
			}
			if s.Type.Fatal() {
				w.log.Error("sbd poison pill received, fencing this host", "host", w.host, "message", s.Type, "sender", s.Sender, "seq", s.Seq)
				w.onFence(Event{Reason: ReasonPill, Slot: s})
				return fmt.Errorf("%w: %s from %s (slot %d seq %d)", ErrFenced, s.Type, s.Sender, s.Index, s.Seq)
			}
		default:
			w.log.Warn("sbd slot unreadable", "host", w.host, "device", w.path, "err", err, "since", lastOK)
			if time.Since(lastOK) >= h.Watchdog {
				w.onFence(Event{Reason: ReasonDeviceLost, Slot: s, Err: err})
				return fmt.Errorf("%w: slot unreadable for %s (watchdog %s): %w", ErrFenced, time.Since(lastOK).Round(time.Millisecond), h.Watchdog, err)
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
