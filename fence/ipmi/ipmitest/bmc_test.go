package ipmitest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/ipmi"
	"github.com/xenha/xenha/fence/ipmi/ipmitest"
)

func TestFenceRunsPowerHookBeforeProof(t *testing.T) {
	var mu sync.Mutex
	var seen []bool
	var b *ipmitest.BMC
	b, err := ipmitest.Start(ipmitest.WithPowerHook(func(on bool) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, on)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	f, err := ipmi.New(map[string]ipmi.Target{"h1": b.Target()},
		ipmi.WithPasswords(ipmitest.Passwords(map[string]*ipmitest.BMC{"h1": b})),
		ipmi.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if p, err := f.Status(ctx, "h1"); err != nil || p != fence.PowerOn {
		t.Fatalf("Status before fencing = %v, %v; want on", p, err)
	}
	proof, err := f.Fence(ctx, "h1")
	if err != nil {
		t.Fatalf("Fence: %v", err)
	}
	mu.Lock()
	got := append([]bool(nil), seen...)
	mu.Unlock()
	if len(got) != 1 || got[0] {
		t.Fatalf("power hook saw %v by the time of the proof %v; want [false]", got, proof)
	}
	if b.On() {
		t.Fatal("chassis still on after a fence proof")
	}
	if err := f.Unfence(ctx, "h1"); err != nil {
		t.Fatalf("Unfence: %v", err)
	}
	if !b.On() {
		t.Fatal("chassis off after Unfence")
	}
}

func TestWrongPasswordIsRejected(t *testing.T) {
	b, err := ipmitest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	f, err := ipmi.New(map[string]ipmi.Target{"h1": b.Target()},
		ipmi.WithPasswords(func(context.Context, string) (string, error) { return "wrong", nil }),
		ipmi.WithExchangeTimeout(200*time.Millisecond), ipmi.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fence(t.Context(), "h1"); err == nil {
		t.Fatal("Fence with a wrong password succeeded")
	}
	if !b.On() {
		t.Fatal("a refused session powered the chassis off")
	}
}

func TestSetPowerPullsThePlug(t *testing.T) {
	calls := 0
	b, err := ipmitest.Start(ipmitest.WithPowerHook(func(on bool) {
		if !on {
			calls++
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	b.SetPower(false)
	if b.On() || calls != 1 {
		t.Fatalf("after SetPower(false): on=%v hook calls=%d", b.On(), calls)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestPowerIgnoredNeverPowersOff(t *testing.T) {
	hooked := false
	b, err := ipmitest.Start(ipmitest.WithPowerIgnored(), ipmitest.WithPowerHook(func(bool) { hooked = true }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	f, err := ipmi.New(map[string]ipmi.Target{"h1": b.Target()},
		ipmi.WithPasswords(ipmitest.Passwords(map[string]*ipmitest.BMC{"h1": b})),
		ipmi.WithPollInterval(20*time.Millisecond), ipmi.WithVerifyTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := f.Fence(t.Context(), "h1"); !errors.Is(err, fence.ErrNotOff) {
		t.Fatalf("Fence through a BMC that ignores power = %v, %v; want ErrNotOff", p, err)
	}
	if !b.On() || hooked {
		t.Fatalf("ignored power command changed something: on=%v hook ran=%v", b.On(), hooked)
	}
}
