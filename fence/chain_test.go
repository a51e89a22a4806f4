package fence_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
)

func newChain(t testing.TB, levels []fence.Level, opts ...fence.ChainOption) *fence.Chain {
	t.Helper()
	c, err := fence.NewChain(levels, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestChainFirstLevelProofEndsChain(t *testing.T) {
	ipmi := fencetest.New(fencetest.Hosts("h1"), fencetest.Method("ipmi"))
	sbd := fencetest.New(fencetest.Hosts("h1"), fencetest.Method("sbd"))
	var seen []fence.Attempt
	c := newChain(t, []fence.Level{{Method: "ipmi", Fencer: ipmi}, {Method: "sbd", Fencer: sbd}},
		fence.OnAttempt(func(a fence.Attempt) { seen = append(seen, a) }))
	p, attempts, err := c.FenceAttempts(t.Context(), "h1")
	if err != nil || p.Method != "ipmi" {
		t.Fatalf("FenceAttempts = %v, %v; want proof by ipmi", p, err)
	}
	if len(attempts) != 1 || attempts[0].Proof == nil || attempts[0].Level != 0 || len(seen) != 1 {
		t.Fatalf("attempts = %+v, seen = %+v; want one successful attempt at level 0", attempts, seen)
	}
	if sbd.FenceCalls("h1") != 0 {
		t.Fatal("chain went on to the second level after a proof")
	}
}

// TestChainEscalates covers each way a level can fail: error, silence (hang
// past the level timeout), a device that is unreachable, and a power-off that
// cannot be confirmed. In each case the next level must be tried and its
// proof returned, with every attempt recorded.
func TestChainEscalates(t *testing.T) {
	for _, b := range []fencetest.Behavior{
		fencetest.Fail(nil), fencetest.Hang(), fencetest.Silent(), fencetest.OffUnknown(),
		fencetest.Succeed().WithLatency(time.Hour),
	} {
		t.Run(b.String(), func(t *testing.T) {
			first := fencetest.New(fencetest.Host("h1", b))
			second := fencetest.New(fencetest.Hosts("h1"), fencetest.Method("pill"))
			c := newChain(t, []fence.Level{
				{Method: "bmc", Fencer: first, Timeout: 30 * time.Millisecond},
				{Method: "pill", Fencer: second, Timeout: time.Minute},
			})
			p, attempts, err := c.FenceAttempts(t.Context(), "h1")
			if err != nil || p.Method != "pill" {
				t.Fatalf("FenceAttempts = %v, %v; want proof by pill", p, err)
			}
			if len(attempts) != 2 || attempts[0].Err == nil || attempts[0].Proof != nil || attempts[1].Proof == nil {
				t.Fatalf("attempts = %+v; want failed bmc then successful pill", attempts)
			}
			if attempts[0].Method != "bmc" || attempts[1].Level != 1 || attempts[1].Start.Before(attempts[0].Start) {
				t.Fatalf("attempts mislabelled or out of order: %+v", attempts)
			}
			if first.FenceCalls("h1") != 1 || second.FenceCalls("h1") != 1 {
				t.Fatalf("calls: first %d, second %d; want 1 each", first.FenceCalls("h1"), second.FenceCalls("h1"))
			}
		})
	}
}

func TestChainAllLevelsFail(t *testing.T) {
	a := fencetest.New(fencetest.Host("h1", fencetest.Silent()))
	b := fencetest.New(fencetest.Host("h1", fencetest.Hang()))
	c := newChain(t, []fence.Level{
		{Method: "ipmi", Fencer: a, Timeout: time.Second},
		{Method: "sbd", Fencer: b, Timeout: 20 * time.Millisecond},
	})
	p, err := c.Fence(t.Context(), "h1")
	if err == nil || p != (fence.Proof{}) {
		t.Fatalf("Fence = %v, %v; want no proof", p, err)
	}
	var ce *fence.ChainError
	if !errors.As(err, &ce) || len(ce.Attempts) != 2 || ce.Host != "h1" {
		t.Fatalf("error %v is not a ChainError with both attempts", err)
	}
	if !errors.Is(err, fence.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ChainError does not unwrap to the attempts' causes: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"h1", "level 0 (ipmi)", "level 1 (sbd)", "unreachable", "do not recover"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message %q lacks %q", msg, want)
		}
	}
}

func TestChainStopsWhenContextEnds(t *testing.T) {
	a := fencetest.New(fencetest.Host("h1", fencetest.Hang()))
	b := fencetest.New(fencetest.Hosts("h1"))
	c := newChain(t, []fence.Level{{Fencer: a, Timeout: time.Hour}, {Fencer: b}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, attempts, err := c.FenceAttempts(ctx, "h1")
	var ce *fence.ChainError
	if !errors.As(err, &ce) || ce.Cause == nil || len(attempts) != 1 {
		t.Fatalf("err = %v, attempts = %d; want a ChainError with cause after one attempt", err, len(attempts))
	}
	if b.FenceCalls("h1") != 0 {
		t.Fatal("chain escalated after its own context ended")
	}
}

// ignoresContext never returns: the chain must give up on it and escalate.
type ignoresContext struct{ release chan struct{} }

func (f ignoresContext) Fence(context.Context, string) (fence.Proof, error) {
	<-f.release
	return fence.Proof{}, errors.New("released")
}

func TestChainEscalatesPastFencerIgnoringContext(t *testing.T) {
	stuck := ignoresContext{release: make(chan struct{})}
	defer close(stuck.release)
	good := fencetest.New(fencetest.Hosts("h1"))
	c := newChain(t, []fence.Level{{Method: "stuck", Fencer: stuck, Timeout: 10 * time.Millisecond}, {Fencer: good}})
	if _, err := c.Fence(t.Context(), "h1"); err != nil {
		t.Fatalf("chain did not escalate past a fencer that ignores its context: %v", err)
	}
}

func TestChainRejectsProofForWrongHost(t *testing.T) {
	wrong := fencerFunc(func(ctx context.Context, h string) (fence.Proof, error) {
		return fence.Proof{Host: "other", Method: "x", Evidence: "e", Time: time.Now()}, nil
	})
	c := newChain(t, []fence.Level{{Method: "wrong", Fencer: wrong}})
	if _, err := c.Fence(t.Context(), "h1"); !errors.Is(err, fence.ErrNotOff) {
		t.Fatalf("err = %v; want ErrNotOff for a proof naming another host", err)
	}
}

type fencerFunc func(ctx context.Context, host string) (fence.Proof, error)

func (f fencerFunc) Fence(ctx context.Context, host string) (fence.Proof, error) { return f(ctx, host) }

func TestNewChainRejectsBadLevels(t *testing.T) {
	f := fencetest.New()
	for name, levels := range map[string][]fence.Level{
		"empty":            nil,
		"nil fencer":       {{Method: "ipmi"}},
		"negative timeout": {{Fencer: f, Timeout: -time.Second}},
	} {
		if _, err := fence.NewChain(levels); err == nil {
			t.Errorf("%s: NewChain accepted it", name)
		}
	}
	c := newChain(t, []fence.Level{{Fencer: f}})
	if l := c.Levels()[0]; l.Timeout != fence.DefaultLevelTimeout || l.Method != "level 0" {
		t.Errorf("defaults not filled in: %+v", l)
	}
}

func TestChainPassesConformance(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Subject {
		dead := fencetest.New(fencetest.Hosts("h1"), fencetest.Host("dead", fencetest.Silent()))
		dead.Script("h1", fencetest.Silent())
		good := fencetest.New(fencetest.Hosts("h1"), fencetest.Host("dead", fencetest.Silent()))
		c := newChain(t, []fence.Level{{Method: "a", Fencer: dead, Timeout: time.Second}, {Method: "b", Fencer: good}})
		return fencetest.Subject{
			Fencer:      c,
			Host:        "h1",
			IsOff:       func(context.Context) (bool, error) { return good.PowerOf("h1") == fence.PowerOff, nil },
			Unreachable: "dead",
		}
	})
}
