package fence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// Level is one rung of a [Chain]: a fencer and how long it may take.
type Level struct {
	// Method names the level in attempts and errors, e.g. "ipmi" or
	// "sbd". When empty the chain uses "level N".
	Method string
	// Fencer does the work.
	Fencer Fencer
	// Timeout bounds the level. A level silent for this long counts as failed
	// and the chain escalates. Zero means DefaultLevelTimeout.
	Timeout time.Duration
}

// DefaultLevelTimeout bounds a level that sets no Timeout. It leaves an IPMI
// power-off with verification enough room on a slow BMC.
const DefaultLevelTimeout = 30 * time.Second

// lateResultGrace is how long the chain waits, after a level's timeout, for a
// fencer that ignores its context before it gives up on it and escalates.
const lateResultGrace = 100 * time.Millisecond

// Attempt records one level's try at fencing a host.
type Attempt struct {
	Host     string
	Level    int // 0-based index into the chain's levels
	Method   string
	Start    time.Time
	Duration time.Duration
	// Proof is set when the level fenced the host; Err otherwise.
	Proof *Proof
	Err   error
}

func (a Attempt) String() string {
	if a.Proof != nil {
		return fmt.Sprintf("level %d (%s): fenced after %s: %s", a.Level, a.Method, a.Duration.Round(time.Millisecond), a.Proof.Evidence)
	}
	return fmt.Sprintf("level %d (%s): failed after %s: %v", a.Level, a.Method, a.Duration.Round(time.Millisecond), a.Err)
}

// ChainError is returned when no level of a chain fenced the host. It lists
// every attempt; errors.Is sees through it to each attempt's error, so
// errors.Is(err, ErrUnreachable) tells whether some device was silent.
type ChainError struct {
	Host     string
	Attempts []Attempt
	// Cause is set when the chain stopped early because its context ended.
	Cause error
}

func (e *ChainError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fence %s: no level fenced the host", e.Host)
	if e.Cause != nil {
		fmt.Fprintf(&b, " (stopped: %v)", e.Cause)
	}
	if len(e.Attempts) == 0 {
		b.WriteString("; no level was tried")
	}
	for _, a := range e.Attempts {
		b.WriteString("; ")
		b.WriteString(a.String())
	}
	b.WriteString("; the host may still be running: do not recover its VMs, check the fencing devices")
	return b.String()
}

// Unwrap returns the cause and each attempt's error.
func (e *ChainError) Unwrap() []error {
	var errs []error
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	for _, a := range e.Attempts {
		if a.Err != nil {
			errs = append(errs, a.Err)
		}
	}
	return errs
}

// Chain fences a host with ordered levels: the first level that returns a proof
// ends the chain; a level that fails or stays silent past its timeout hands
// over to the next. Chain is itself a Fencer, so chains nest, and a
// StatusReader and Unfencer that ask its levels in order.
type Chain struct {
	levels    []Level
	onAttempt func(Attempt)
	log       *slog.Logger
	now       func() time.Time
}

// ChainOption configures a Chain.
type ChainOption func(*Chain)

// OnAttempt registers a function called after every attempt, successful or
// not, in order. It must not block for long: the chain waits for it.
func OnAttempt(f func(Attempt)) ChainOption { return func(c *Chain) { c.onAttempt = f } }

// WithChainLogger logs attempts to l.
func WithChainLogger(l *slog.Logger) ChainOption { return func(c *Chain) { c.log = l } }

// WithChainClock replaces time.Now for attempt timestamps (tests).
func WithChainClock(now func() time.Time) ChainOption { return func(c *Chain) { c.now = now } }

// NewChain returns a chain over levels, tried in order. It rejects an empty
// chain, a level without a fencer and a negative timeout.
func NewChain(levels []Level, opts ...ChainOption) (*Chain, error) {
	if len(levels) == 0 {
		return nil, errors.New("fence: chain needs at least one level")
	}
	c := &Chain{
		levels: make([]Level, len(levels)),
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:    time.Now,
	}
	for i, l := range levels {
		if l.Fencer == nil {
			return nil, fmt.Errorf("fence: chain level %d (%q) has no fencer", i, l.Method)
		}
		if l.Timeout < 0 {
			return nil, fmt.Errorf("fence: chain level %d (%q) has negative timeout %s", i, l.Method, l.Timeout)
		}
		if l.Timeout == 0 {
			l.Timeout = DefaultLevelTimeout
		}
		if l.Method == "" {
			l.Method = fmt.Sprintf("level %d", i)
		}
		c.levels[i] = l
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Levels returns a copy of the chain's levels, with defaults filled in.
func (c *Chain) Levels() []Level { return append([]Level(nil), c.levels...) }

// Fence runs the chain. On failure the error is a *ChainError.
func (c *Chain) Fence(ctx context.Context, host string) (Proof, error) {
	p, _, err := c.FenceAttempts(ctx, host)
	return p, err
}

// FenceAttempts runs the chain and also returns every attempt made, for the
// fence record and the incident timeline.
func (c *Chain) FenceAttempts(ctx context.Context, host string) (Proof, []Attempt, error) {
	var attempts []Attempt
	for i, l := range c.levels {
		if err := ctx.Err(); err != nil {
			return Proof{}, attempts, &ChainError{Host: host, Attempts: attempts, Cause: err}
		}
		a := c.try(ctx, i, l, host)
		attempts = append(attempts, a)
		if a.Proof != nil {
			c.log.Info("host fenced", "host", host, "level", i, "method", l.Method, "duration", a.Duration, "evidence", a.Proof.Evidence)
		} else {
			c.log.Warn("fence level failed, escalating", "host", host, "level", i, "method", l.Method, "duration", a.Duration, "err", a.Err)
		}
		if c.onAttempt != nil {
			c.onAttempt(a)
		}
		if a.Proof != nil {
			return *a.Proof, attempts, nil
		}
	}
	var cause error
	if err := ctx.Err(); err != nil {
		cause = err
	}
	return Proof{}, attempts, &ChainError{Host: host, Attempts: attempts, Cause: cause}
}

type levelResult struct {
	proof Proof
	err   error
}

// try runs one level. The fencer runs in its own goroutine so that one which
// ignores its context cannot stall the escalation; its late answer is dropped.
func (c *Chain) try(ctx context.Context, i int, l Level, host string) Attempt {
	a := Attempt{Host: host, Level: i, Method: l.Method, Start: c.now()}
	lctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	done := make(chan levelResult, 1)
	go func() {
		p, err := l.Fencer.Fence(lctx, host)
		done <- levelResult{p, err}
	}()
	var r levelResult
	select {
	case r = <-done:
	case <-lctx.Done():
		select {
		case r = <-done:
		case <-time.After(lateResultGrace):
			r.err = lctx.Err()
		}
	}
	a.Duration = c.now().Sub(a.Start)
	switch {
	case r.err == nil && r.proof.Host != host:
		a.Err = &Error{Host: host, Method: l.Method, Step: "check proof",
			Err: fmt.Errorf("fencer returned a proof for %q instead of %q: %w", r.proof.Host, host, ErrNotOff)}
	case r.err == nil:
		// A proof that raced with the timeout is still a proof: keep it.
		p := r.proof
		a.Proof = &p
	case errors.Is(r.err, context.DeadlineExceeded) && ctx.Err() == nil:
		a.Err = &Error{Host: host, Method: l.Method, Step: "timeout",
			Err: fmt.Errorf("no proof within %s (%w); escalating", l.Timeout, r.err)}
	default:
		a.Err = r.err
	}
	return a
}
