package fencetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
)

// Subject is what the conformance suite fences: a fencer, a host it is
// configured for, and a way to look at the host directly rather than through
// the fencer, so that a fencer cannot pass by merely claiming success.
type Subject struct {
	// Fencer under test. If it also implements fence.StatusReader or
	// fence.Unfencer, those are checked too.
	Fencer fence.Fencer
	// Host is a host the fencer is configured for. It must be on when the
	// subject is created.
	Host string
	// IsOff reports whether Host is really off (the simulated BMC's power state,
	// whether the victim's watcher killed itself, ...), independently of the
	// fencer.
	IsOff func(ctx context.Context) (bool, error)
	// Unreachable, optional, is a host the fencer is configured for whose
	// fencing device does not answer.
	Unreachable string
	// Unknown is a host the fencer has no configuration for. Default
	// "fencetest-no-such-host".
	Unknown string
	// Timeout bounds each call the suite makes. Default 30s. Fencers that wait
	// out a lease or msgwait need it longer than that wait.
	Timeout time.Duration
}

// hangGrace is how long a call may outlive its context before the suite calls
// it hung. It detects deadlocks; it is not a performance bound.
const hangGrace = 10 * time.Second

func (s *Subject) defaults() {
	if s.Unknown == "" {
		s.Unknown = "fencetest-no-such-host"
	}
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Second
	}
}

// A check is one clause of the contract; it returns what is wrong, or nil.
type check struct {
	name string
	fn   func(ctx context.Context, s Subject) error
}

var checks = []check{
	{"FenceTurnsHostOff", checkFence},
	{"FenceIsIdempotent", checkFenceTwice},
	{"UnknownHost", checkUnknownHost},
	{"UnreachableDevice", checkUnreachable},
	{"CanceledContext", checkCanceled},
	{"CancelWhileWaiting", checkCancelWhileWaiting},
	{"CancelWhileFencing", checkCancelWhileFencing},
	{"Status", checkStatus},
	{"Unfence", checkUnfence},
}

// errSkip marks a clause that does not apply to the subject.
type errSkip string

func (e errSkip) Error() string { return string(e) }

// Run checks the fencer contract against fresh subjects, one per clause:
//   - Fence returns a proof (Host, Method, Evidence, Time set) only when the
//     host is verifiably off, and IsOff agrees;
//   - fencing an already-off host succeeds;
//   - an unconfigured host gives an error wrapping fence.ErrUnknownHost;
//   - an unreachable device gives an error, never a proof;
//   - an ended context gives an error and no proof, and a call in progress
//     (waiting on a dead device, or fencing the live host) returns once its
//     context ends, with a proof only if the host is off;
//   - Status (if implemented) reports on, then off; Unfence (if implemented)
//     brings the host back and it can be fenced again.
func Run(t *testing.T, newSubject func(t *testing.T) Subject) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			s := newSubject(t)
			s.defaults()
			err := c.fn(t.Context(), s)
			var skip errSkip
			switch {
			case errors.As(err, &skip):
				t.Skip(string(skip))
			case err != nil:
				t.Fatal(err)
			}
		})
	}
}

type result struct {
	proof fence.Proof
	err   error
}

// fence calls Fence with a bounded context and detects a hung call.
func fenceBounded(ctx context.Context, s Subject, host string) (fence.Proof, error, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	return fenceCtx(ctx, s.Fencer, host)
}

func fenceCtx(ctx context.Context, f fence.Fencer, host string) (fence.Proof, error, error) {
	done := make(chan result, 1)
	go func() {
		p, err := f.Fence(ctx, host)
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		return r.proof, r.err, nil
	case <-ctx.Done():
	}
	select {
	case r := <-done:
		return r.proof, r.err, nil
	case <-time.After(hangGrace):
		return fence.Proof{}, nil, fmt.Errorf("Fence(%q) still running %s after its context ended (%v): it must return when ctx ends", host, hangGrace, ctx.Err())
	}
}

func isOff(ctx context.Context, s Subject) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	off, err := s.IsOff(ctx)
	if err != nil {
		return false, fmt.Errorf("subject's IsOff(%q): %w", s.Host, err)
	}
	return off, nil
}

func checkProof(p fence.Proof, host string, start, end time.Time) error {
	var problems []string
	if p.Host != host {
		problems = append(problems, fmt.Sprintf("Host = %q, want %q", p.Host, host))
	}
	if p.Method == "" {
		problems = append(problems, "Method is empty")
	}
	if p.Evidence == "" {
		problems = append(problems, "Evidence is empty")
	}
	if p.Time.IsZero() {
		problems = append(problems, "Time is zero")
	} else if p.Time.After(end.Add(time.Second)) {
		problems = append(problems, fmt.Sprintf("Time %s is after Fence returned (%s)", p.Time, end))
	}
	if len(problems) > 0 {
		return fmt.Errorf("bad proof %+v: %v", p, problems)
	}
	return nil
}

func fenceAndVerify(ctx context.Context, s Subject) (fence.Proof, error) {
	start := time.Now()
	p, err, hung := fenceBounded(ctx, s, s.Host)
	if hung != nil {
		return p, hung
	}
	if err != nil {
		return p, fmt.Errorf("Fence(%q) = %v; want a proof", s.Host, err)
	}
	if err := checkProof(p, s.Host, start, time.Now()); err != nil {
		return p, err
	}
	off, err := isOff(ctx, s)
	if err != nil {
		return p, err
	}
	if !off {
		return p, fmt.Errorf("Fence(%q) returned proof %v but the host is still on", s.Host, p)
	}
	return p, nil
}

func checkFence(ctx context.Context, s Subject) error {
	off, err := isOff(ctx, s)
	if err != nil {
		return err
	}
	if off {
		return fmt.Errorf("subject's host %q is already off before Fence; the subject must start with it on", s.Host)
	}
	_, err = fenceAndVerify(ctx, s)
	return err
}

func checkFenceTwice(ctx context.Context, s Subject) error {
	if _, err := fenceAndVerify(ctx, s); err != nil {
		return fmt.Errorf("first fence: %w", err)
	}
	if _, err := fenceAndVerify(ctx, s); err != nil {
		return fmt.Errorf("fencing an already-off host: %w", err)
	}
	return nil
}

func checkUnknownHost(ctx context.Context, s Subject) error {
	p, err, hung := fenceBounded(ctx, s, s.Unknown)
	if hung != nil {
		return hung
	}
	if err == nil || p != (fence.Proof{}) {
		return fmt.Errorf("Fence(unknown host %q) = %v, %v; want no proof and an error wrapping fence.ErrUnknownHost", s.Unknown, p, err)
	}
	if !errors.Is(err, fence.ErrUnknownHost) {
		return fmt.Errorf("Fence(unknown host %q) error %q does not wrap fence.ErrUnknownHost", s.Unknown, err)
	}
	if err.Error() == "" {
		return errors.New("empty error message")
	}
	return nil
}

func checkUnreachable(ctx context.Context, s Subject) error {
	if s.Unreachable == "" {
		return errSkip("subject has no unreachable host")
	}
	p, err, hung := fenceBounded(ctx, s, s.Unreachable)
	if hung != nil {
		return hung
	}
	if err == nil || p != (fence.Proof{}) {
		return fmt.Errorf("Fence(%q) with a dead device = %v, %v; want an error and no proof", s.Unreachable, p, err)
	}
	if errors.Is(err, fence.ErrUnknownHost) {
		return fmt.Errorf("Fence(%q) with a dead device says the host is unknown (%v); it is configured", s.Unreachable, err)
	}
	return nil
}

func checkCanceled(ctx context.Context, s Subject) error {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p, err, hung := fenceCtx(cctx, s.Fencer, s.Host)
	if hung != nil {
		return hung
	}
	if err == nil || p != (fence.Proof{}) {
		return fmt.Errorf("Fence(%q) with a canceled context = %v, %v; want an error and no proof", s.Host, p, err)
	}
	return nil
}

func checkCancelWhileWaiting(ctx context.Context, s Subject) error {
	if s.Unreachable == "" {
		return errSkip("subject has no unreachable host to wait on")
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	p, err, hung := fenceCtx(cctx, s.Fencer, s.Unreachable)
	if hung != nil {
		return hung
	}
	if err == nil || p != (fence.Proof{}) {
		return fmt.Errorf("Fence(%q) canceled while waiting = %v, %v; want an error and no proof", s.Unreachable, p, err)
	}
	return nil
}

// checkCancelWhileFencing cancels a fence of the real host soon after it
// starts (during a poison pill's msgwait, a BMC's verify loop, ...). The call
// must return; a proof is acceptable only if the host really is off.
func checkCancelWhileFencing(ctx context.Context, s Subject) error {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	p, err, hung := fenceCtx(cctx, s.Fencer, s.Host)
	if hung != nil {
		return hung
	}
	if err != nil {
		if p != (fence.Proof{}) {
			return fmt.Errorf("Fence(%q) canceled returned both a proof %v and an error %v", s.Host, p, err)
		}
		return nil
	}
	off, ierr := isOff(ctx, s)
	if ierr != nil {
		return ierr
	}
	if !off {
		return fmt.Errorf("Fence(%q) canceled after 20ms returned proof %v but the host is still on", s.Host, p)
	}
	return nil
}

func status(ctx context.Context, s Subject, sr fence.StatusReader, host string) (fence.Power, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	return sr.Status(ctx, host)
}

func checkStatus(ctx context.Context, s Subject) error {
	sr, ok := s.Fencer.(fence.StatusReader)
	if !ok {
		return errSkip("fencer does not implement fence.StatusReader")
	}
	if p, err := status(ctx, s, sr, s.Host); err != nil || p != fence.PowerOn {
		return fmt.Errorf("Status(%q) before fencing = %v, %v; want on", s.Host, p, err)
	}
	if _, err := fenceAndVerify(ctx, s); err != nil {
		return err
	}
	if p, err := status(ctx, s, sr, s.Host); err != nil || p != fence.PowerOff {
		return fmt.Errorf("Status(%q) after fencing = %v, %v; want off", s.Host, p, err)
	}
	if p, err := status(ctx, s, sr, s.Unknown); !errors.Is(err, fence.ErrUnknownHost) {
		return fmt.Errorf("Status(unknown host %q) = %v, %v; want an error wrapping fence.ErrUnknownHost", s.Unknown, p, err)
	}
	return nil
}

func checkUnfence(ctx context.Context, s Subject) error {
	u, ok := s.Fencer.(fence.Unfencer)
	if !ok {
		return errSkip("fencer does not implement fence.Unfencer")
	}
	if _, err := fenceAndVerify(ctx, s); err != nil {
		return err
	}
	uctx, cancel := context.WithTimeout(ctx, s.Timeout)
	err := u.Unfence(uctx, s.Host)
	cancel()
	if errors.Is(err, fence.ErrNotSupported) {
		return errSkip(fmt.Sprintf("Unfence not supported: %v", err))
	}
	if err != nil {
		return fmt.Errorf("Unfence(%q) after fencing: %w", s.Host, err)
	}
	// The host may take a moment to come back (a poison pill's victim rejoins
	// on its own); poll within the subject's timeout.
	deadline := time.Now().Add(s.Timeout)
	for {
		off, err := isOff(ctx, s)
		if err != nil {
			return err
		}
		if !off {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Unfence(%q) returned nil but the host stayed off for %s", s.Host, s.Timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sr, ok := s.Fencer.(fence.StatusReader); ok {
		if p, err := status(ctx, s, sr, s.Host); err != nil || p != fence.PowerOn {
			return fmt.Errorf("Status(%q) after Unfence = %v, %v; want on", s.Host, p, err)
		}
	}
	if _, err := fenceAndVerify(ctx, s); err != nil {
		return fmt.Errorf("fencing again after Unfence: %w", err)
	}
	if err := u.Unfence(ctx, s.Unknown); !errors.Is(err, fence.ErrUnknownHost) {
		return fmt.Errorf("Unfence(unknown host %q) = %v; want an error wrapping fence.ErrUnknownHost", s.Unknown, err)
	}
	return nil
}
