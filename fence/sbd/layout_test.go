package sbd_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/sbd"
)

var testHeader = sbd.Header{Slots: 4, Loop: 20 * time.Millisecond, Watchdog: 200 * time.Millisecond, MsgWait: 800 * time.Millisecond,
	UUID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}

func TestHeaderRoundTripAndCorruption(t *testing.T) {
	b, err := testHeader.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h, err := sbd.UnmarshalHeader(b)
	want := testHeader
	want.Version = sbd.Version
	if err != nil || h != want {
		t.Fatalf("round trip = %+v, %v; want %+v", h, err, want)
	}
	for i := 8; i < 52; i++ { // every byte after the magic is covered by the CRC
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if _, err := sbd.UnmarshalHeader(c); !errors.Is(err, sbd.ErrCorrupt) {
			t.Fatalf("flipping header byte %d: err = %v, want ErrCorrupt", i, err)
		}
	}
	if _, err := sbd.UnmarshalHeader(make([]byte, sbd.BlockSize)); !errors.Is(err, sbd.ErrNotSBD) {
		t.Fatalf("zero block: err = %v, want ErrNotSBD", err)
	}
	if _, err := sbd.UnmarshalHeader(b[:20]); !errors.Is(err, sbd.ErrCorrupt) {
		t.Fatalf("short block: err = %v, want ErrCorrupt", err)
	}
}

func TestHeaderValidate(t *testing.T) {
	for name, mut := range map[string]func(*sbd.Header){
		"no slots":              func(h *sbd.Header) { h.Slots = 0 },
		"too many slots":        func(h *sbd.Header) { h.Slots = 1000 },
		"loop not under wd":     func(h *sbd.Header) { h.Loop = h.Watchdog },
		"msgwait under wd+loop": func(h *sbd.Header) { h.MsgWait = h.Watchdog },
		"zero watchdog":         func(h *sbd.Header) { h.Watchdog = 0 },
	} {
		h := testHeader
		mut(&h)
		if err := h.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, h)
		}
		if _, err := h.MarshalBinary(); err == nil {
			t.Errorf("%s: MarshalBinary accepted %+v", name, h)
		}
	}
}

func TestSlotRoundTripAndCorruption(t *testing.T) {
	s := sbd.Slot{Index: 3, Owner: "host-b", Type: sbd.MsgOff, Sender: "host-a", Seq: 42, Time: time.Unix(1700000000, 123)}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := sbd.UnmarshalSlot(b, 3)
	if err != nil || !got.Time.Equal(s.Time) || got.Owner != s.Owner || got.Type != s.Type || got.Sender != s.Sender || got.Seq != s.Seq {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, s)
	}
	if _, err := sbd.UnmarshalSlot(b, 2); !errors.Is(err, sbd.ErrCorrupt) {
		t.Fatalf("slot read at the wrong index: err = %v, want ErrCorrupt", err)
	}
	c := bytes.Clone(b)
	c[20] ^= 1 // inside the owner name
	if _, err := sbd.UnmarshalSlot(c, 3); !errors.Is(err, sbd.ErrCorrupt) {
		t.Fatalf("flipped owner byte: err = %v, want ErrCorrupt", err)
	}
	free, err := sbd.UnmarshalSlot(make([]byte, sbd.BlockSize), 1)
	if err != nil || free.Owner != "" || free.Type != sbd.MsgClear {
		t.Fatalf("zeroed slot = %+v, %v; want free and clear", free, err)
	}
	if _, err := (sbd.Slot{Owner: string(make([]byte, 65))}).MarshalBinary(); err == nil {
		t.Fatal("accepted a 65-byte owner")
	}
}

func FuzzUnmarshal(f *testing.F) {
	hb, _ := testHeader.MarshalBinary()
	sb, _ := sbd.Slot{Index: 0, Owner: "h", Type: sbd.MsgReset, Sender: "x", Seq: 1}.MarshalBinary()
	f.Add(hb[:64])
	f.Add(sb[:160])
	f.Add([]byte("XENHASBD"))
	f.Add([]byte("SLOT"))
	f.Fuzz(func(t *testing.T, data []byte) {
		block := make([]byte, sbd.BlockSize)
		copy(block, data)
		if h, err := sbd.UnmarshalHeader(block); err == nil {
			if h.Validate() != nil {
				t.Fatalf("decoded an invalid header %+v", h)
			}
			again, err := h.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if h2, err := sbd.UnmarshalHeader(again); err != nil || h2 != h {
				t.Fatalf("re-encoding changed the header: %+v vs %+v (%v)", h2, h, err)
			}
		}
		if s, err := sbd.UnmarshalSlot(block, 0); err == nil {
			again, err := s.MarshalBinary()
			if err != nil {
				t.Fatalf("decoded slot %+v does not encode: %v", s, err)
			}
			if s2, err := sbd.UnmarshalSlot(again, 0); err != nil || s2.Owner != s.Owner || s2.Seq != s.Seq || s2.Type != s.Type {
				t.Fatalf("re-encoding changed the slot: %+v vs %+v (%v)", s2, s, err)
			}
		}
	})
}
