package fence_test

import (
	"errors"
	"testing"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
)

func TestChainStatusAndUnfence(t *testing.T) {
	dead := fencetest.New(fencetest.Host("h1", fencetest.Silent()))
	unsure := fencetest.New(fencetest.Host("h1", fencetest.OffUnknown()))
	good := fencetest.New(fencetest.Hosts("h1"))
	c := newChain(t, []fence.Level{{Method: "dead", Fencer: dead}, {Method: "unsure", Fencer: unsure}, {Method: "good", Fencer: good}})
	ctx := t.Context()
	if p, err := c.Status(ctx, "h1"); err != nil || p != fence.PowerOn {
		t.Fatalf("Status = %v, %v; want on from the third level", p, err)
	}
	good.SetPower("h1", fence.PowerOff)
	if err := c.Unfence(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	// The silent level cannot unfence; the second (whose device cannot
	// confirm power, but can switch it) does.
	if unsure.PowerOf("h1") != fence.PowerOn || dead.FenceCalls("h1") != 0 {
		t.Fatalf("Unfence went to the wrong level: unsure %v", unsure.PowerOf("h1"))
	}
	if _, err := c.Status(ctx, "nobody"); !errors.Is(err, fence.ErrUnknownHost) {
		t.Fatalf("Status(unknown) = %v", err)
	}
	only := newChain(t, []fence.Level{{Method: "fn", Fencer: fencerFunc(nil)}})
	if _, err := only.Status(ctx, "h1"); !errors.Is(err, fence.ErrNotSupported) {
		t.Fatalf("Status without a StatusReader level = %v; want ErrNotSupported", err)
	}
	if err := only.Unfence(ctx, "h1"); !errors.Is(err, fence.ErrNotSupported) {
		t.Fatalf("Unfence without an Unfencer level = %v; want ErrNotSupported", err)
	}
}
