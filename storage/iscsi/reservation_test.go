package iscsi_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/iscsi"
)

// TestReservationHandOver runs the fencing sequence on a real tgtd with two
// initiators standing for two hosts: generation 1 on host A, then host B
// takes the volume over at generation 2. The target itself must refuse A's
// writes from then on, which is what makes the generation a fencing token
// the storage enforces.
func TestReservationHandOver(t *testing.T) {
	g := startTgtd(t)
	const iqn = "iqn.2026-11.test.xenha:pr"
	g.AddTarget(1, iqn, 4<<20)
	ctx := ctxT(t)
	login := func(host string) *iscsi.Session {
		s, err := iscsi.Login(ctx, g.Portal, iqn, iscsi.WithInitiatorName("iqn.2026-11.test.xenha:"+host))
		if err != nil {
			t.Fatalf("login as %s: %v", host, err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	}
	a, b := login("host-a"), login("host-b")
	block := func(c byte) []byte { return bytes.Repeat([]byte{c}, 512) }

	if err := a.TakeOver(ctx, 1, 1); err != nil {
		t.Fatalf("A takes generation 1: %v", err)
	}
	if r, err := a.ReadReservation(ctx, 1); err != nil || r == nil || r.Key != 1 || r.Type != iscsi.WriteExclusiveRegistrantsOnly {
		t.Fatalf("reservation after A = %+v, %v; want key 1, type 5", r, err)
	}
	if err := a.Write(ctx, 1, 0, 512, block('a')); err != nil {
		t.Fatalf("A writes: %v", err)
	}
	if err := b.Write(ctx, 1, 0, 512, block('b')); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("unregistered B writes: %v, want a reservation conflict (ErrInUse)", err)
	}
	if err := b.TakeOver(ctx, 1, 1); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("B claims A's generation: %v, want ErrInUse", err)
	}
	if err := b.TakeOver(ctx, 1, 2); err != nil {
		t.Fatalf("B takes generation 2: %v", err)
	}
	keys, err := b.ReadKeys(ctx, 1)
	if err != nil || len(keys) != 1 || keys[0] != 2 {
		t.Fatalf("keys after hand-over = %v, %v; want only 2", keys, err)
	}
	if err := a.Write(ctx, 1, 0, 512, block('a')); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("fenced A writes: %v, want a reservation conflict", err)
	}
	if err := a.TakeOver(ctx, 1, 1); !errors.Is(err, storage.ErrStaleGeneration) {
		t.Fatalf("fenced A re-takes generation 1: %v, want ErrStaleGeneration", err)
	}
	if err := b.Write(ctx, 1, 0, 512, block('b')); err != nil {
		t.Fatalf("B writes: %v", err)
	}
	got, err := b.Read(ctx, 1, 0, 1, 512)
	if err != nil || !bytes.Equal(got, block('b')) {
		t.Fatalf("read back %q..., %v; want B's block", got[:min(8, len(got))], err)
	}
	// A's stale detach must not disturb B.
	_ = a.Unregister(ctx, 1, 1)
	if err := b.Write(ctx, 1, 1, 512, block('c')); err != nil {
		t.Fatalf("B writes after A's stale unregister: %v", err)
	}
	if err := b.Unregister(ctx, 1, 2); err != nil {
		t.Fatalf("B releases: %v", err)
	}
	if r, err := b.ReadReservation(ctx, 1); err != nil || r != nil {
		t.Fatalf("reservation after B released = %+v, %v; want none", r, err)
	}
}

// TestHostLoginHealthSeesPreemption: host A attached in HostLogin mode,
// host B takes the LUN over; A's Health must report that A is now a stale
// writer, through the target's own reservation state.
func TestHostLoginHealthSeesPreemption(t *testing.T) {
	g := startTgtd(t)
	const iqn = "iqn.2026-11.test.xenha:health-pr"
	g.AddTarget(1, iqn, 4<<20)
	sa, sb := newStandIn("host-a", g.Portal), newStandIn("host-b", g.Portal)
	t.Cleanup(sa.close)
	t.Cleanup(sb.close)
	a := iscsi.New("host-a", iscsi.WithMode(iscsi.HostLogin), iscsi.WithRunner(sa))
	b := iscsi.New("host-b", iscsi.WithMode(iscsi.HostLogin), iscsi.WithRunner(sb))
	ctx := ctxT(t)
	vol := tgtVolume(g.Portal, iqn)
	vol.Generation = 4
	if _, err := a.Attach(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := a.Health(ctx, vol); err != nil {
		t.Fatalf("health of the holder: %v", err)
	}
	newer := vol
	newer.Generation = 5
	if _, err := b.Attach(ctx, newer); err != nil {
		t.Fatal(err)
	}
	err := a.Health(ctx, vol)
	if !errors.Is(err, storage.ErrStaleGeneration) {
		t.Fatalf("health of the preempted host: %v, want ErrStaleGeneration", err)
	}
	if err := b.Health(ctx, newer); err != nil {
		t.Fatalf("health of the new holder: %v", err)
	}
}

// TestTakeOverOwnOlderKey: a host that holds generation 3 and is given
// generation 4 (say, after a controller restart) re-keys its own
// registration; it must not try to preempt itself, which the target would
// refuse.
func TestTakeOverOwnOlderKey(t *testing.T) {
	g := startTgtd(t)
	const iqn = "iqn.2026-11.test.xenha:rekey"
	g.AddTarget(1, iqn, 1<<20)
	sa := newStandIn("host-a", g.Portal)
	t.Cleanup(sa.close)
	a := iscsi.New("host-a", iscsi.WithMode(iscsi.HostLogin), iscsi.WithRunner(sa))
	ctx := ctxT(t)
	vol := tgtVolume(g.Portal, iqn)
	for _, gen := range []uint64{3, 4} {
		vol.Generation = gen
		if _, err := a.Attach(ctx, vol); err != nil {
			t.Fatalf("attach at generation %d: %v", gen, err)
		}
	}
	probe, err := iscsi.Login(ctx, g.Portal, iqn)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close(ctx)
	keys, err := probe.ReadKeys(ctx, 1)
	if err != nil || len(keys) != 1 || keys[0] != 4 {
		t.Fatalf("keys = %v, %v; want only 4", keys, err)
	}
	if r, err := probe.ReadReservation(ctx, 1); err != nil || r == nil || r.Key != 4 {
		t.Fatalf("reservation = %+v, %v; want key 4", r, err)
	}
	if err := a.Health(ctx, vol); err != nil {
		t.Fatalf("health after re-key: %v", err)
	}
}
