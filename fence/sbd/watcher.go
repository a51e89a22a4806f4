package sbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
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
	// ReasonDeviceLost: a majority of the devices could not be read for
	// longer than the watchdog timeout, so a pill might be there unseen.
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
	Device string // the device holding the pill, for ReasonPill
	Slot   Slot   // the pill, for ReasonPill
	Err    error  // the last read errors, for ReasonDeviceLost
}

// Watcher runs on the victim: it reads its host's slot on every device each
// loop interval and fences the host (calls its callback: in production, stop
// feeding the watchdog and reboot or power off) when any device holds a
// pill, or when it could not read a majority of the devices for longer than
// the watchdog timeout. A fencer needs a majority for its proof too, so the
// two majorities always share a device.
type Watcher struct {
	paths   []string
	host    string
	onFence func(Event)
	log     *slog.Logger
	onRead  func(Slot)
	healthy func(until time.Time)
}

// WatcherOption configures a Watcher.
type WatcherOption func(*Watcher)

// WithWatcherLogger logs reads and errors.
func WithWatcherLogger(l *slog.Logger) WatcherOption { return func(w *Watcher) { w.log = l } }

// OnRead is called after each successful read of the slot (tests; health
// reporting).
func OnRead(f func(Slot)) WatcherOption { return func(w *Watcher) { w.onRead = f } }

// OnHealthy is called after each round in which a majority of the devices
// was read and held no pill, with the time until which this host may run on
// that evidence (now + the watchdog timeout). Feed it to the watchdog
// keeper as its own source, so that a watcher that hangs or dies stops the
// keep-alives too:
//
//	sbd.OnHealthy(func(until time.Time) { keeper.FeedSource("sbd", until) })
func OnHealthy(f func(until time.Time)) WatcherOption { return func(w *Watcher) { w.healthy = f } }

// NewWatcher returns a watcher for host's slot on the given devices (one to
// three, as with SBD). onFence must fence the host; it is called at most
// once per Run.
func NewWatcher(devices []string, host string, onFence func(Event), opts ...WatcherOption) (*Watcher, error) {
	if len(devices) == 0 || host == "" || onFence == nil {
		return nil, errors.New("sbd: watcher needs devices, a host and a fence callback")
	}
	for _, p := range devices {
		if p == "" {
			return nil, errors.New("sbd: watcher given an empty device path")
		}
	}
	w := &Watcher{paths: append([]string(nil), devices...), host: host, onFence: onFence,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(w)
	}
	return w, nil
}

// watched is one device as the watcher sees it.
type watched struct {
	path  string
	dev   *Device
	index int
}

// open (re)opens the device and finds the host's slot.
func (x *watched) open(ctx context.Context, host string) error {
	if x.dev != nil {
		return nil
	}
	d, err := Open(ctx, x.path)
	if err != nil {
		return err
	}
	s, err := d.Find(ctx, host)
	if err != nil {
		d.Close()
		return err
	}
	x.dev, x.index = d, s.Index
	return nil
}

func (x *watched) read(ctx context.Context, host string) (Slot, error) {
	if err := x.open(ctx, host); err != nil {
		return Slot{}, err
	}
	s, err := x.dev.Slot(ctx, x.index)
	if err == nil && s.Owner != host {
		err = fmt.Errorf("sbd: slot %d of %s now belongs to %q, not %q", x.index, x.path, s.Owner, host)
	}
	return s, err
}

// Run watches the slot until ctx ends (returning ctx's error) or the host is
// fenced (ErrFenced, after the callback ran). A majority of the devices must
// open and hold a slot for the host at start, else Run returns the error at
// once: start the watcher before the host starts VMs.
func (w *Watcher) Run(ctx context.Context) error {
	devs := make([]*watched, len(w.paths))
	for i, p := range w.paths {
		devs[i] = &watched{path: p}
	}
	defer func() {
		for _, x := range devs {
			if x.dev != nil {
				x.dev.Close()
			}
		}
	}()
	need := len(devs)/2 + 1
	var (
		opened int
		errs   []error
	)
	var watchdog, loop time.Duration
	for _, x := range devs {
		if err := x.open(ctx, w.host); err != nil {
			errs = append(errs, err)
			continue
		}
		opened++
		h := x.dev.Header()
		if watchdog == 0 || h.Watchdog < watchdog {
			watchdog = h.Watchdog
		}
		if loop == 0 || h.Loop < loop {
			loop = h.Loop
		}
	}
	if opened < need {
		return fmt.Errorf("sbd: watcher of %q opened %d of %d devices, needs %d: %w", w.host, opened, len(devs), need, errors.Join(errs...))
	}
	lastQuorum := time.Now()
	tick := time.NewTicker(loop)
	defer tick.Stop()
	slots := make([]Slot, len(devs))
	rerrs := make([]error, len(devs))
	for {
		// One loop interval per round, reads in parallel, so a hung device
		// cannot stall the others or the lost-device check.
		rctx, cancel := context.WithTimeout(ctx, loop)
		var wg sync.WaitGroup
		for i, x := range devs {
			wg.Go(func() { slots[i], rerrs[i] = x.read(rctx, w.host) })
		}
		wg.Wait()
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ok := 0
		for i, s := range slots {
			if rerrs[i] != nil {
				continue
			}
			ok++
			if w.onRead != nil {
				w.onRead(s)
			}
			if s.Type.Fatal() {
				w.log.Error("sbd poison pill received, fencing this host", "host", w.host, "device", devs[i].path, "message", s.Type, "sender", s.Sender, "seq", s.Seq)
				w.onFence(Event{Reason: ReasonPill, Device: devs[i].path, Slot: s})
				return fmt.Errorf("%w: %s from %s (%s slot %d seq %d)", ErrFenced, s.Type, s.Sender, devs[i].path, s.Index, s.Seq)
			}
		}
		if ok >= need {
			lastQuorum = time.Now()
			if w.healthy != nil {
				w.healthy(lastQuorum.Add(watchdog))
			}
		} else {
			var failed []string
			for _, err := range rerrs {
				if err != nil {
					failed = append(failed, err.Error())
				}
			}
			w.log.Warn("sbd devices unreadable", "host", w.host, "readable", ok, "of", len(devs), "since", lastQuorum, "errors", strings.Join(failed, "; "))
			if time.Since(lastQuorum) >= watchdog {
				err := errors.Join(rerrs...)
				w.onFence(Event{Reason: ReasonDeviceLost, Err: err})
				return fmt.Errorf("%w: %d of %d devices readable for %s (watchdog %s): %w", ErrFenced, ok, len(devs), time.Since(lastQuorum).Round(time.Millisecond), watchdog, err)
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
