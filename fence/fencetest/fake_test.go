package fencetest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
)

func TestFakeBehaviors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		b         fencetest.Behavior
		wantErr   error // nil: want a proof
		wantPower fence.Power
	}{
		{"succeed", fencetest.Succeed(), nil, fence.PowerOff},
		{"fail", fencetest.Fail(boom), boom, fence.PowerOn},
		{"fail default", fencetest.Fail(nil), fencetest.ErrScripted, fence.PowerOn},
		{"silent", fencetest.Silent(), fence.ErrUnreachable, fence.PowerOn},
		{"off unknown", fencetest.OffUnknown(), fence.ErrNotOff, fence.PowerOff},
		{"hang", fencetest.Hang(), context.DeadlineExceeded, fence.PowerOn},
		{"latency then succeed", fencetest.Succeed().WithLatency(5 * time.Millisecond), nil, fence.PowerOff},
		{"latency past deadline", fencetest.Succeed().WithLatency(time.Hour), context.DeadlineExceeded, fence.PowerOn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fencetest.New(fencetest.Host("h1", tt.b))
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			p, err := f.Fence(ctx, "h1")
			if tt.wantErr == nil {
				if err != nil || p.Host != "h1" || p.Method != "fake" {
					t.Fatalf("Fence = %v, %v; want a proof for h1", p, err)
				}
			} else {
				if !errors.Is(err, tt.wantErr) || p != (fence.Proof{}) {
					t.Fatalf("Fence = %v, %v; want no proof and %v", p, err, tt.wantErr)
				}
				var fe *fence.Error
				if !errors.As(err, &fe) || fe.Host != "h1" {
					t.Fatalf("error %v is not a *fence.Error naming h1", err)
				}
			}
			if got := f.PowerOf("h1"); got != tt.wantPower {
				t.Fatalf("PowerOf(h1) = %v, want %v", got, tt.wantPower)
			}
			calls := f.Calls()
			if len(calls) != 1 || calls[0].Op != "fence" || calls[0].Host != "h1" || calls[0].End.Before(calls[0].Start) {
				t.Fatalf("call log = %+v; want one fence call on h1", calls)
			}
		})
	}
}

func TestFakeFailTimesThenSucceeds(t *testing.T) {
	f := fencetest.New(fencetest.Host("h1", fencetest.FailTimes(2, nil)))
	for i := 0; i < 2; i++ {
		if _, err := f.Fence(t.Context(), "h1"); !errors.Is(err, fencetest.ErrScripted) {
			t.Fatalf("call %d: err = %v, want scripted failure", i+1, err)
		}
	}
	if _, err := f.Fence(t.Context(), "h1"); err != nil {
		t.Fatalf("third call: %v, want success", err)
	}
	if n := f.FenceCalls("h1"); n != 3 {
		t.Fatalf("FenceCalls = %d, want 3", n)
	}
}

func TestFakeOnFenceRunsOnceWhenPoweringOff(t *testing.T) {
	var mu sync.Mutex
	killed := map[string]int{}
	f := fencetest.New(fencetest.Hosts("h1", "h2"), fencetest.OnFence(func(h string) {
		mu.Lock()
		killed[h]++
		mu.Unlock()
	}))
	for i := 0; i < 3; i++ {
		if _, err := f.Fence(t.Context(), "h1"); err != nil {
			t.Fatal(err)
		}
	}
	if killed["h1"] != 1 || killed["h2"] != 0 {
		t.Fatalf("OnFence calls = %v; want h1 once (only the power-off transition)", killed)
	}
}

func TestFakeStatusAndUnfence(t *testing.T) {
	f := fencetest.New(fencetest.Hosts("h1"))
	ctx := t.Context()
	if p, err := f.Status(ctx, "h1"); err != nil || p != fence.PowerOn {
		t.Fatalf("Status = %v, %v; want on", p, err)
	}
	if _, err := f.Fence(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if p, _ := f.Status(ctx, "h1"); p != fence.PowerOff {
		t.Fatalf("Status after fence = %v, want off", p)
	}
	if err := f.Unfence(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if p := f.PowerOf("h1"); p != fence.PowerOn {
		t.Fatalf("PowerOf after unfence = %v, want on", p)
	}
	f.Script("h1", fencetest.OffUnknown())
	if p, err := f.Status(ctx, "h1"); err != nil || p != fence.PowerUnknown {
		t.Fatalf("Status with OffUnknown = %v, %v; want unknown", p, err)
	}
	if _, err := f.Status(ctx, "nope"); !errors.Is(err, fence.ErrUnknownHost) {
		t.Fatalf("Status(unknown) err = %v", err)
	}
}

// TestFakeConcurrent fences many hosts at once; -race checks the locking and
// the hook sees every host exactly once.
func TestFakeConcurrent(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	f := fencetest.New(fencetest.Hosts(names...), fencetest.OnFence(func(h string) {
		mu.Lock()
		seen[h]++
		mu.Unlock()
	}))
	var wg sync.WaitGroup
	for _, n := range names {
		for i := 0; i < 4; i++ {
			wg.Go(func() {
				if _, err := f.Fence(t.Context(), n); err != nil {
					t.Error(err)
				}
				_, _ = f.Status(t.Context(), n)
			})
		}
	}
	wg.Wait()
	for _, n := range names {
		if seen[n] != 1 || f.PowerOf(n) != fence.PowerOff {
			t.Errorf("host %s: hook ran %d times, power %v; want once, off", n, seen[n], f.PowerOf(n))
		}
	}
	if got := len(f.Calls()); got != 2*4*len(names) {
		t.Errorf("call log has %d calls, want %d", got, 2*4*len(names))
	}
}

func TestFakePassesConformance(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Subject {
		f := fencetest.New(fencetest.Hosts("h1"), fencetest.Host("dead", fencetest.Silent()))
		return fencetest.Subject{
			Fencer:      f,
			Host:        "h1",
			IsOff:       func(context.Context) (bool, error) { return f.PowerOf("h1") == fence.PowerOff, nil },
			Unreachable: "dead",
		}
	})
}

func TestFakePassesConformanceWhenHanging(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Subject {
		f := fencetest.New(fencetest.Hosts("h1"), fencetest.Host("dead", fencetest.Hang()))
		return fencetest.Subject{
			Fencer:      f,
			Host:        "h1",
			IsOff:       func(context.Context) (bool, error) { return f.PowerOf("h1") == fence.PowerOff, nil },
			Unreachable: "dead",
			Timeout:     time.Second,
		}
	})
}
