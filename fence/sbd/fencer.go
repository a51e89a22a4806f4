package sbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xenha/xenha/fence"
)

// Method is the method name in proofs and errors.
const Method = "sbd"

// Fencer fences hosts by writing a poison pill into their slot on the
// shared devices and waiting msgwait: by then the victim has read the pill
// and fenced itself, or has lost a majority of the devices for longer than
// its watchdog timeout and fenced itself for that. With several devices
// (up to three, as with SBD) the pill must reach a majority of them. It
// implements fence.Fencer and fence.Unfencer (Unfence clears the slots so the
// host may rejoin).
type Fencer struct {
	sender  string
	targets map[string][]string
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
// hosts, each mapped to the SBD devices holding its slot (the same devices
// its watcher reads).
func New(sender string, targets map[string][]string, opts ...Option) (*Fencer, error) {
	if sender == "" || len(sender) > MaxName {
		return nil, fmt.Errorf("sbd: sender name %q must be 1-%d bytes", sender, MaxName)
	}
	f := &Fencer{sender: sender, targets: map[string][]string{}, msg: MsgOff,
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
	for h, paths := range targets {
		if h == "" || len(h) > MaxName {
			return nil, fmt.Errorf("sbd: host name %q must be 1-%d bytes", h, MaxName)
		}
		if len(paths) == 0 {
			return nil, fmt.Errorf("sbd: host %q has no device", h)
		}
		for _, p := range paths {
			if p == "" {
				return nil, fmt.Errorf("sbd: host %q has an empty device path", h)
			}
		}
		f.targets[h] = append([]string(nil), paths...)
	}
	return f, nil
}

// Hosts returns the configured hosts, sorted.
func (f *Fencer) Hosts() []string {
	return slices.Sorted(maps.Keys(f.targets))
}

func (f *Fencer) fail(host, step string, err error) error {
	return &fence.Error{Host: host, Method: Method, Step: step, Err: err}
}

// written is one device's outcome.
type written struct {
	path string
	slot Slot
	h    Header
	err  error
}

// send writes m into host's slot on every device, in parallel (a hung
// device must not hold up the others).
func (f *Fencer) send(ctx context.Context, host string, m MessageType) ([]written, error) {
	paths, ok := f.targets[host]
	if !ok {
		return nil, fence.ErrUnknownHost
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]written, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Go(func() {
			out[i].path = p
			d, err := Open(ctx, p)
			if err != nil {
				out[i].err = unreachable(err)
				return
			}
			defer d.Close()
			out[i].h = d.Header()
			out[i].slot, out[i].err = d.Send(ctx, host, m, f.sender)
			out[i].err = unreachable(out[i].err)
		})
	}
	wg.Wait()
	return out, nil
}

// summarise splits outcomes into successes and a joined error; when every
// device lacks a slot for the host, the error wraps fence.ErrUnknownHost.
func summarise(ws []written) (ok []written, err error) {
	var errs []error
	noSlot := 0
	for _, w := range ws {
		if w.err == nil {
			ok = append(ok, w)
			continue
		}
		if errors.Is(w.err, ErrNoSlot) {
			noSlot++
		}
		errs = append(errs, w.err)
	}
	err = errors.Join(errs...)
	if noSlot == len(ws) {
		err = fmt.Errorf("%w (%w)", fence.ErrUnknownHost, err)
	}
	return ok, err
}

// Fence writes the pill to every device, needs it read back from a
// majority, and waits the longest msgwait among them.
func (f *Fencer) Fence(ctx context.Context, host string) (fence.Proof, error) {
	ws, err := f.send(ctx, host, f.msg)
	if err != nil {
		return fence.Proof{}, f.fail(host, "write pill", err)
	}
	ok, err := summarise(ws)
	need := len(ws)/2 + 1
	if len(ok) < need {
		return fence.Proof{}, f.fail(host, "write pill",
			fmt.Errorf("pill written to %d of %d devices, a majority (%d) is needed: %w", len(ok), len(ws), need, err))
	}
	var wait time.Duration
	var ev []string
	for _, w := range ok {
		wait = max(wait, w.h.MsgWait)
		ev = append(ev, fmt.Sprintf("%q seq %d in slot %d of %s (device %x)", w.slot.Type, w.slot.Seq, w.slot.Index, w.path, w.h.UUID[:4]))
	}
	wait += f.margin
	f.log.Info("sbd poison pill written", "host", host, "devices", len(ok), "of", len(ws), "msgwait", wait, "errors", err)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return fence.Proof{}, f.fail(host, "msgwait", fmt.Errorf("pill written but msgwait %s not yet over: %w", wait, ctx.Err()))
	}
	evidence := fmt.Sprintf("poison pill written and read back: %s; msgwait %s elapsed", strings.Join(ev, ", "), wait)
	if len(ok) < len(ws) {
		evidence += fmt.Sprintf(" (%d of %d devices failed: %v)", len(ws)-len(ok), len(ws), err)
	}
	// The victim kills itself on reading the pill (or its watchdog does):
	// nothing here saw it go off.
	return fence.Proof{Host: host, Method: Method, Evidence: evidence, Time: f.now(), Kind: fence.ProofSelfFence}, nil
}

// Unfence clears the host's slot on every device, so that its watcher lets
// it run again. Every device must be cleared: a pill left on one would
// fence the host again.
func (f *Fencer) Unfence(ctx context.Context, host string) error {
	ws, err := f.send(ctx, host, MsgClear)
	if err != nil {
		return f.fail(host, "clear slot", err)
	}
	if ok, err := summarise(ws); len(ok) < len(ws) {
		return f.fail(host, "clear slot", fmt.Errorf("cleared %d of %d devices: %w", len(ok), len(ws), err))
	}
	return nil
}

var (
	_ fence.Fencer   = (*Fencer)(nil)
	_ fence.Unfencer = (*Fencer)(nil)
)
