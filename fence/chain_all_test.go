package fence_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
)

func TestAllNeedsEveryDevice(t *testing.T) {
	psu1 := fencetest.New(fencetest.Hosts("h1"), fencetest.Method("pdu-a"))
	psu2 := fencetest.New(fencetest.Host("h1", fencetest.Silent()), fencetest.Method("pdu-b"))
	both := fence.All("dual-pdu", psu1, psu2)
	p, err := both.Fence(t.Context(), "h1")
	if !errors.Is(err, fence.ErrUnreachable) || p != (fence.Proof{}) {
		t.Fatalf("one feed silent: %v, %v; want no proof", p, err)
	}
	if !strings.Contains(err.Error(), "1 of 2") || !strings.Contains(err.Error(), "device 1") {
		t.Fatalf("error %q should say which device failed", err)
	}
	psu2.Script("h1", fencetest.Succeed())
	p, err = both.Fence(t.Context(), "h1")
	if err != nil || p.Method != "dual-pdu" || !strings.Contains(p.Evidence, "pdu-a") || !strings.Contains(p.Evidence, "pdu-b") {
		t.Fatalf("both feeds: %v, %v", p, err)
	}
	if psu1.PowerOf("h1") != fence.PowerOff || psu2.PowerOf("h1") != fence.PowerOff {
		t.Fatal("a feed was left on")
	}
	if _, err := fence.All("none").Fence(t.Context(), "h1"); err == nil {
		t.Fatal("All with no fencers gave a proof")
	}
}

// All's proof is as strong as its weakest device's: one feed read back as
// off and one that cannot say do not make a verified power-off.
func TestAllProvesTheWeakestKind(t *testing.T) {
	for _, tc := range []struct {
		a, b, want fence.ProofKind
	}{
		{fence.ProofVerifiedOff, fence.ProofVerifiedOff, fence.ProofVerifiedOff},
		{fence.ProofVerifiedOff, fence.ProofUnverified, fence.ProofUnverified},
		{fence.ProofSelfFence, fence.ProofVerifiedOff, fence.ProofSelfFence},
	} {
		a := fencetest.New(fencetest.Hosts("h1"), fencetest.Proves(tc.a))
		b := fencetest.New(fencetest.Hosts("h1"), fencetest.Proves(tc.b))
		p, err := fence.All("dual", a, b).Fence(t.Context(), "h1")
		if err != nil || p.Kind != tc.want {
			t.Errorf("%v + %v: %v, %v; want a %v proof", tc.a, tc.b, p, err, tc.want)
		}
	}
	for _, k := range []fence.ProofKind{fence.ProofUnverified, fence.ProofSelfFence, fence.ProofVerifiedOff} {
		if got, err := fence.ParseProofKind(k.String()); got != k || err != nil {
			t.Errorf("ParseProofKind(%q) = %v, %v", k, got, err)
		}
	}
	if _, err := fence.ParseProofKind("off"); err == nil {
		t.Error("ParseProofKind accepted \"off\"")
	}
}

func TestAllPassesConformance(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Subject {
		a := fencetest.New(fencetest.Hosts("h1"), fencetest.Host("dead", fencetest.Silent()))
		b := fencetest.New(fencetest.Hosts("h1", "dead"))
		return fencetest.Subject{Fencer: fence.All("dual", a, b), Host: "h1", Unreachable: "dead",
			IsOff: func(context.Context) (bool, error) {
				return a.PowerOf("h1") == fence.PowerOff && b.PowerOf("h1") == fence.PowerOff, nil
			}}
	})
}
