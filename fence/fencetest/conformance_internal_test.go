package fencetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
)

// fencerFunc adapts a function to fence.Fencer.
type fencerFunc func(ctx context.Context, host string) (fence.Proof, error)

func (f fencerFunc) Fence(ctx context.Context, host string) (fence.Proof, error) { return f(ctx, host) }

func proofFor(host string) fence.Proof {
	return fence.Proof{Host: host, Method: "broken", Evidence: "trust me", Time: time.Now()}
}

// TestSuiteCatchesBrokenFencers proves the suite can fail: each broken fencer
// violates one clause, and that clause must report it.
func TestSuiteCatchesBrokenFencers(t *testing.T) {
	off := false
	honest := func(ctx context.Context, host string) (fence.Proof, error) {
		if err := ctx.Err(); err != nil {
			return fence.Proof{}, err
		}
		switch host {
		case "h1":
			off = true
			return proofFor(host), nil
		case "dead":
			return fence.Proof{}, fence.ErrUnreachable
		}
		return fence.Proof{}, fence.ErrUnknownHost
	}
	tests := []struct {
		name   string
		clause func(context.Context, Subject) error
		fencer fencerFunc
		want   string
	}{
		{"liar claims off", checkFence, func(ctx context.Context, h string) (fence.Proof, error) {
			return proofFor(h), nil
		}, "still on"},
		{"proof without evidence", checkFence, func(ctx context.Context, h string) (fence.Proof, error) {
			off = true
			return fence.Proof{Host: h, Method: "m", Time: time.Now()}, nil
		}, "Evidence is empty"},
		{"proof for another host", checkFence, func(ctx context.Context, h string) (fence.Proof, error) {
			off = true
			return proofFor("other"), nil
		}, "want \"h1\""},
		{"second fence fails", checkFenceTwice, func(ctx context.Context, h string) (fence.Proof, error) {
			if off {
				return fence.Proof{}, errors.New("already off")
			}
			off = true
			return proofFor(h), nil
		}, "already-off"},
		{"unknown host not wrapped", checkUnknownHost, func(ctx context.Context, h string) (fence.Proof, error) {
			return fence.Proof{}, errors.New("no idea")
		}, "does not wrap"},
		{"dead device gives proof", checkUnreachable, func(ctx context.Context, h string) (fence.Proof, error) {
			return proofFor(h), nil
		}, "want an error and no proof"},
		{"slow liar ignores cancellation", checkCancelWhileFencing, func(ctx context.Context, h string) (fence.Proof, error) {
			time.Sleep(50 * time.Millisecond)
			return proofFor(h), nil
		}, "still on"},
		{"ignores canceled context", checkCanceled, func(ctx context.Context, h string) (fence.Proof, error) {
			off = true
			return proofFor(h), nil
		}, "canceled context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off = false
			s := Subject{Fencer: tt.fencer, Host: "h1", Unreachable: "dead",
				IsOff: func(context.Context) (bool, error) { return off, nil }}
			s.defaults()
			err := tt.clause(t.Context(), s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("clause error = %v; want one mentioning %q", err, tt.want)
			}
			// The same clause passes on an honest fencer, so it is the breakage
			// that was caught.
			off = false
			s.Fencer = fencerFunc(honest)
			if err := tt.clause(t.Context(), s); err != nil {
				t.Fatalf("clause fails an honest fencer too: %v", err)
			}
		})
	}
}
