package sbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/xenha/xenha/fence"
)

// Method is the method name in proofs and errors.
const Method = "sbd"

// Fencer fences hosts by writing a poison pill into their slot on a shared
// device and waiting msgwait: by then the victim has read the pill and fenced
// itself, or has lost the device for longer than its watchdog timeout and
// fenced itself for that. It implements fence.Fencer and fence.Unfencer
// (Unfence clears the slot so the host may rejoin).
type Fencer struct {
	sender  string
	targets map[string]string
	msg     MessageType
	margin  time.Duration
	log     *slog.Logger
	now     func() time.Time
}

// Option configures a Fencer.
type Option func(*Fencer)

// WithMessage sets the pill (MsgOff, the default, or MsgReset).
func WithMessage(m MessageType) Option { return func(f *Fencer) { f.msg = m } }

// WithMargin adds to msgwait before a proof, for clock-rate differences
// between hosts (default 0; msgwait itself should already hold the margin).
func WithMargin(d time.Duration) Option { return func(f *Fencer) { f.margin = d } }

// WithLogger logs pills written.
func WithLogger(l *slog.Logger) Option { return func(f *Fencer) { f.log = l } }

// WithClock replaces time.Now for proof timestamps.
func WithClock(now func() time.Time) Option { return func(f *Fencer) { f.now = now } }

// New returns a Fencer writing pills as sender (this host's ID) for the given
// hosts, each mapped to the SBD device holding its slot.
func New(sender string, targets map[string]string, opts ...Option) (*Fencer, error) {
	if sender == "" || len(sender) > MaxName {
		return nil, fmt.Errorf("sbd: sender name %q must be 1-%d bytes", sender, MaxName)
	}
	f := &Fencer{sender: sender, targets: map[string]string{}, msg: MsgOff,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	for _, o := range opts {
		o(f)
	}
	if !f.msg.Fatal() {
		return nil, fmt.Errorf("sbd: pill must be off or reset, not %s", f.msg)
	}
	if f.margin < 0 {
		return nil, fmt.Errorf("sbd: negative margin %s", f.margin)
	}
	for h, p := range targets {
		if h == "" || len(h) > MaxName {
			return nil, fmt.Errorf("sbd: host name %q must be 1-%d bytes", h, MaxName)
		}
		if p == "" {
			return nil, fmt.Errorf("sbd: host %q has no device path", h)
		}
		f.targets[h] = p
	}
	return f, nil
}

// Hosts returns the configured hosts, sorted.
func (f *Fencer) Hosts() []string {
	out := make([]string, 0, len(f.targets))
	for h := range f.targets {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

func (f *Fencer) fail(host, step string, err error) error {
	return &fence.Error{Host: host, Method: Method, Step: step, Err: err}
}

// open opens the host's device and finds its slot.
func (f *Fencer) open(ctx context.Context, host, step string) (*Device, error) {
	path, ok := f.targets[host]
	if !ok {
		return nil, f.fail(host, step, fence.ErrUnknownHost)
	}
	if err := ctx.Err(); err != nil {
		return nil, f.fail(host, step, err)
	}
	d, err := Open(ctx, path)
	if err != nil {
		return nil, f.fail(host, "open device", unreachable(err))
	}
	return d, nil
}

// Fence writes the pill, reads it back, and waits the device's msgwait.
func (f *Fencer) Fence(ctx context.Context, host string) (fence.Proof, error) {
	d, err := f.open(ctx, host, "write pill")
	if err != nil {
		return fence.Proof{}, err
	}
	defer d.Close()
	s, err := d.Send(ctx, host, f.msg, f.sender)
	if errors.Is(err, ErrNoSlot) {
		return fence.Proof{}, f.fail(host, "write pill", fmt.Errorf("%w (%w)", fence.ErrUnknownHost, err))
	}
	if err != nil {
		return fence.Proof{}, f.fail(host, "write pill", unreachable(err))
	}
	h := d.Header()
	wait := h.MsgWait + f.margin
	f.log.Info("sbd poison pill written", "host", host, "device", d.Path(), "slot", s.Index, "seq", s.Seq, "msgwait", wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return fence.Proof{}, f.fail(host, "msgwait", fmt.Errorf("pill written (slot %d, seq %d) but msgwait %s not yet over: %w", s.Index, s.Seq, wait, ctx.Err()))
	}
	ev := fmt.Sprintf("poison pill %q seq %d written to slot %d of %s (device %x) at %s and read back; msgwait %s elapsed (victim watchdog %s)",
		s.Type, s.Seq, s.Index, d.Path(), h.UUID[:4], s.Time.Format(time.RFC3339Nano), wait, h.Watchdog)
	return fence.Proof{Host: host, Method: Method, Evidence: ev, Time: f.now()}, nil
}

// Unfence clears the host's slot, so that its watcher lets it run again.
func (f *Fencer) Unfence(ctx context.Context, host string) error {
	d, err := f.open(ctx, host, "clear slot")
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := d.Send(ctx, host, MsgClear, f.sender); err != nil {
		if errors.Is(err, ErrNoSlot) {
			return f.fail(host, "clear slot", fmt.Errorf("%w (%w)", fence.ErrUnknownHost, err))
		}
		return f.fail(host, "clear slot", unreachable(err))
	}
	return nil
}

var (
	_ fence.Fencer   = (*Fencer)(nil)
	_ fence.Unfencer = (*Fencer)(nil)
)
