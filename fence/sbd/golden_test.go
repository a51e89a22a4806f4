package sbd_test

import (
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/sbd"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestLayoutGolden pins the on-disk bytes of layout version 1: hosts running
// different builds share the device, so an accidental change to the encoding
// must fail here. Run with -update only together with a version bump.
func TestLayoutGolden(t *testing.T) {
	h := sbd.Header{Slots: 3, Loop: time.Second, Watchdog: 5 * time.Second, MsgWait: 10 * time.Second,
		UUID: [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}
	hb, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sbd.Slot{Index: 1, Owner: "host-b", Type: sbd.MsgOff, Sender: "host-a", Seq: 7,
		Time: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Only the used prefix of each block; the rest is zero (checked below).
	got := hex.Dump(hb[:64]) + "--\n" + hex.Dump(sb[:168])
	for _, b := range [][]byte{hb[64:], sb[168:]} {
		for i, c := range b {
			if c != 0 {
				t.Fatalf("byte %d past the fields is %#x, want 0", i, c)
			}
		}
	}
	path := filepath.Join("testdata", "layout-v1.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestLayoutGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("layout v1 encoding changed:\n got:\n%s\nwant:\n%s", got, want)
	}
}
