package sbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// On-disk layout, version 1. The device is divided into blocks of BlockSize
// bytes: block 0 is the header, block 1+i is slot i. A block is written
// whole in one I/O, so a torn write is caught by the block's checksum. All
// integers are big-endian; every block ends its fields with a CRC32
// (Castagnoli) of the bytes before it.
//
//	header: magic "XENHASBD" | version u16 | flags u16 | slots u32 |
//	        block size u32 | watchdog ms u32 | msgwait ms u32 |
//	        loop ms u32 | uuid [16] | crc u32
//	slot:   magic "SLOT" | version u16 | index u16 | owner [64] |
//	        type u8 | pad [7] | sender [64] | seq u64 | time (unix ns) i64 |
//	        crc u32
const (
	// BlockSize is the size of the header and of each slot. It is a
	// multiple of every common logical sector size, so O_DIRECT works on
	// 512-byte and 4 KiB devices alike.
	BlockSize = 4096
	// Version is the layout version this package writes and reads.
	Version = 1
	// MaxSlots bounds the slot count (a 1 MiB device holds 255).
	MaxSlots = 255
	// MaxName is the longest host name a slot holds.
	MaxName = 64

	headerMagic = "XENHASBD"
	slotMagic   = "SLOT"
	headerLen   = 8 + 2 + 2 + 4 + 4 + 4 + 4 + 4 + 16
	slotLen     = 4 + 2 + 2 + MaxName + 1 + 7 + MaxName + 8 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors callers branch on.
var (
	// ErrNotSBD: the device holds no xenha SBD header (never initialised,
	// or something else overwrote it).
	ErrNotSBD = errors.New("sbd: no SBD header on device")
	// ErrCorrupt: a header or slot failed its checksum or has impossible
	// values. Do not trust the device until it is re-created.
	ErrCorrupt = errors.New("sbd: corrupt SBD block")
	// ErrVersion: the device was written by a newer, unknown layout.
	ErrVersion = errors.New("sbd: unsupported SBD layout version")
	// ErrNoSlot: the device has no slot for that host, and none is free.
	ErrNoSlot = errors.New("sbd: no slot for host")
)

// MessageType is what a slot asks its host to do.
type MessageType uint8

// Message types.
const (
	MsgClear MessageType = iota // nothing to do; the host may run
	MsgTest                     // a liveness test; the host logs it
	MsgReset                    // reboot now
	MsgOff                      // power off now
)

var msgNames = [...]string{"clear", "test", "reset", "off"}

func (m MessageType) String() string {
	if int(m) < len(msgNames) {
		return msgNames[m]
	}
	return fmt.Sprintf("message(%d)", uint8(m))
}

// Fatal reports whether the message orders the host to fence itself.
func (m MessageType) Fatal() bool { return m == MsgReset || m == MsgOff }

// Header describes an SBD device.
type Header struct {
	Version uint16
	Slots   int
	// Watchdog is the victim's watchdog timeout: a victim that cannot read
	// its slot for this long fences itself.
	Watchdog time.Duration
	// MsgWait is how long a fencer waits after writing a pill before it
	// counts the victim as dead. It must exceed Watchdog plus Loop.
	MsgWait time.Duration
	// Loop is how often a victim reads its slot.
	Loop time.Duration
	UUID [16]byte
}

// Validate checks the timing invariants that make a pill a proof.
func (h Header) Validate() error {
	switch {
	case h.Slots < 1 || h.Slots > MaxSlots:
		return fmt.Errorf("sbd: %d slots, want 1-%d", h.Slots, MaxSlots)
	case h.Loop <= 0 || h.Watchdog <= 0 || h.MsgWait <= 0:
		return fmt.Errorf("sbd: loop %s, watchdog %s and msgwait %s must be positive", h.Loop, h.Watchdog, h.MsgWait)
	case h.Loop >= h.Watchdog:
		return fmt.Errorf("sbd: loop %s must be shorter than the watchdog timeout %s", h.Loop, h.Watchdog)
	case h.MsgWait < h.Watchdog+h.Loop:
		return fmt.Errorf("sbd: msgwait %s must be at least watchdog %s + loop %s, or a victim may outlive it (2 x watchdog is usual)", h.MsgWait, h.Watchdog, h.Loop)
	case h.MsgWait > 24*time.Hour || h.Watchdog > 24*time.Hour:
		return fmt.Errorf("sbd: msgwait %s or watchdog %s longer than a day", h.MsgWait, h.Watchdog)
	}
	return nil
}

// Size is the number of bytes a device with this header needs.
func (h Header) Size() int64 { return int64(1+h.Slots) * BlockSize }

// Slot is one host's mailbox.
type Slot struct {
	Index  int
	Owner  string // host the slot belongs to; empty if free
	Type   MessageType
	Sender string
	Seq    uint64
	Time   time.Time
}

func ms(d time.Duration) uint32 { return uint32(d / time.Millisecond) }

// MarshalBinary encodes the header as a full block.
func (h Header) MarshalBinary() ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, BlockSize)
	copy(b, headerMagic)
	be := binary.BigEndian
	be.PutUint16(b[8:], Version)
	be.PutUint16(b[10:], 0)
	be.PutUint32(b[12:], uint32(h.Slots))
	be.PutUint32(b[16:], BlockSize)
	be.PutUint32(b[20:], ms(h.Watchdog))
	be.PutUint32(b[24:], ms(h.MsgWait))
	be.PutUint32(b[28:], ms(h.Loop))
	copy(b[32:48], h.UUID[:])
	be.PutUint32(b[headerLen:], crc32.Checksum(b[:headerLen], castagnoli))
	return b, nil
}

// UnmarshalHeader decodes and checks a header block.
func UnmarshalHeader(b []byte) (Header, error) {
	if len(b) < headerLen+4 {
		return Header{}, fmt.Errorf("%w: header block is %d bytes", ErrCorrupt, len(b))
	}
	if string(b[:8]) != headerMagic {
		return Header{}, ErrNotSBD
	}
	be := binary.BigEndian
	if got, want := be.Uint32(b[headerLen:]), crc32.Checksum(b[:headerLen], castagnoli); got != want {
		return Header{}, fmt.Errorf("%w: header checksum %08x, computed %08x", ErrCorrupt, got, want)
	}
	h := Header{
		Version:  be.Uint16(b[8:]),
		Slots:    int(be.Uint32(b[12:])),
		Watchdog: time.Duration(be.Uint32(b[20:])) * time.Millisecond,
		MsgWait:  time.Duration(be.Uint32(b[24:])) * time.Millisecond,
		Loop:     time.Duration(be.Uint32(b[28:])) * time.Millisecond,
	}
	copy(h.UUID[:], b[32:48])
	if h.Version != Version {
		return Header{}, fmt.Errorf("%w: version %d (this build reads %d)", ErrVersion, h.Version, Version)
	}
	if bs := be.Uint32(b[16:]); bs != BlockSize {
		return Header{}, fmt.Errorf("%w: block size %d, want %d", ErrCorrupt, bs, BlockSize)
	}
	if err := h.Validate(); err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return h, nil
}

func putName(dst []byte, name string) error {
	if len(name) > MaxName {
		return fmt.Errorf("sbd: name %q longer than %d bytes", name, MaxName)
	}
	if bytes.IndexByte([]byte(name), 0) >= 0 {
		return fmt.Errorf("sbd: name %q contains NUL", name)
	}
	copy(dst, name)
	return nil
}

func getName(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// MarshalBinary encodes the slot as a full block.
func (s Slot) MarshalBinary() ([]byte, error) {
	if s.Index < 0 || s.Index >= MaxSlots {
		return nil, fmt.Errorf("sbd: slot index %d out of range", s.Index)
	}
	if s.Type > MsgOff {
		return nil, fmt.Errorf("sbd: unknown message type %d", s.Type)
	}
	b := make([]byte, BlockSize)
	be := binary.BigEndian
	copy(b, slotMagic)
	be.PutUint16(b[4:], Version)
	be.PutUint16(b[6:], uint16(s.Index))
	if err := putName(b[8:8+MaxName], s.Owner); err != nil {
		return nil, err
	}
	off := 8 + MaxName
	b[off] = byte(s.Type)
	off += 8
	if err := putName(b[off:off+MaxName], s.Sender); err != nil {
		return nil, err
	}
	off += MaxName
	be.PutUint64(b[off:], s.Seq)
	var t int64
	if !s.Time.IsZero() {
		t = s.Time.UnixNano()
	}
	be.PutUint64(b[off+8:], uint64(t))
	be.PutUint32(b[slotLen:], crc32.Checksum(b[:slotLen], castagnoli))
	return b, nil
}

// UnmarshalSlot decodes and checks slot block number index. An all-zero
// block is a free, clear slot (a freshly zeroed device).
func UnmarshalSlot(b []byte, index int) (Slot, error) {
	if len(b) < slotLen+4 {
		return Slot{}, fmt.Errorf("%w: slot %d block is %d bytes", ErrCorrupt, index, len(b))
	}
	if allZero(b[:slotLen+4]) {
		return Slot{Index: index}, nil
	}
	be := binary.BigEndian
	if string(b[:4]) != slotMagic {
		return Slot{}, fmt.Errorf("%w: slot %d has no slot magic", ErrCorrupt, index)
	}
	if got, want := be.Uint32(b[slotLen:]), crc32.Checksum(b[:slotLen], castagnoli); got != want {
		return Slot{}, fmt.Errorf("%w: slot %d checksum %08x, computed %08x", ErrCorrupt, index, got, want)
	}
	if v := be.Uint16(b[4:]); v != Version {
		return Slot{}, fmt.Errorf("%w: slot %d version %d", ErrVersion, index, v)
	}
	if i := int(be.Uint16(b[6:])); i != index {
		return Slot{}, fmt.Errorf("%w: block of slot %d says it is slot %d", ErrCorrupt, index, i)
	}
	s := Slot{Index: index, Owner: getName(b[8 : 8+MaxName])}
	off := 8 + MaxName
	s.Type = MessageType(b[off])
	if s.Type > MsgOff {
		return Slot{}, fmt.Errorf("%w: slot %d has unknown message type %d", ErrCorrupt, index, b[off])
	}
	off += 8
	s.Sender = getName(b[off : off+MaxName])
	off += MaxName
	s.Seq = be.Uint64(b[off:])
	if t := int64(be.Uint64(b[off+8:])); t != 0 {
		s.Time = time.Unix(0, t)
	}
	return s, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
