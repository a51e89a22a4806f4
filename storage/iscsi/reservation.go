package iscsi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/wire"
)

// ReservationType is a SCSI-3 persistent reservation type (SPC-4 table 6.x).
type ReservationType byte

// The reservation types xenha uses.
const (
	// WriteExclusiveRegistrantsOnly lets every registered I_T nexus write and
	// no one else. xenha keeps only the newest generation's key registered,
	// so it means "only the current writer writes".
	WriteExclusiveRegistrantsOnly ReservationType = 5
	// WriteExclusiveAllRegistrants is the same for the purpose here, with
	// the reservation surviving its holder's unregistration.
	WriteExclusiveAllRegistrants ReservationType = 7
)

// PERSISTENT RESERVE OUT service actions.
const (
	proRegister       = 0x00
	proReserve        = 0x01
	proPreempt        = 0x04
	proPreemptAbort   = 0x05
	proRegisterIgnore = 0x06
)

// Reservation is the persistent reservation a logical unit reports.
type Reservation struct {
	Key  uint64
	Type ReservationType
}

// Session is a logged-in iSCSI session to one target, for the commands a
// storage-level fence needs: persistent reservations, and reads and writes
// to prove who may write. It is safe for concurrent use; commands are sent
// one at a time.
type Session struct {
	mu sync.Mutex
	c  *conn
}

// Login opens a session to target iqn on portal; ctx bounds the login only.
// Use WithInitiatorName to tell hosts apart: SCSI reservations belong to the
// initiator that registered.
func Login(ctx context.Context, portal, iqn string, opts ...ProbeOption) (*Session, error) {
	cfg := newProbeConfig(opts)
	lctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	c, err := dial(lctx, portal, cfg.initiator)
	if err != nil {
		return nil, err
	}
	if err := c.login(lctx, "Normal", iqn); err != nil {
		c.close()
		return nil, err
	}
	c.stop() // the session outlives lctx; each command binds its own
	return &Session{c: c}, nil
}

// Close logs out (bounded by ctx, and by DefaultProbeTimeout if ctx has no
// deadline: a hung target must not hang the cleanup) and closes the
// connection.
func (s *Session) Close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, DefaultProbeTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	release := s.bind(ctx)
	s.c.logout(ctx)
	release()
	s.c.nc.Close()
}

// bind makes ctx bound the next exchange on the connection.
func (s *Session) bind(ctx context.Context) (release func()) { return wire.Bind(ctx, s.c.nc) }

// do runs a command, consuming unit attentions: after a preemption or a
// reset the target reports one to each affected initiator before anything
// else, and it carries no answer to the command itself.
func (s *Session) do(ctx context.Context, lun int, op string, cdb []byte, expLen int, out []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	release := s.bind(ctx)
	defer release()
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		var data []byte
		data, err = s.c.command(ctx, lun, op, cdb, expLen, out)
		var se *SCSIError
		if errors.As(err, &se) && se.Status == statusCheckCondition && se.Key == senseUnitAttention {
			continue
		}
		return data, err
	}
	return nil, err
}

// ReadCapacity reports the unit's size.
func (s *Session) ReadCapacity(ctx context.Context, lun int) (Capacity, error) {
	if err := ctx.Err(); err != nil {
		return Capacity{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	release := s.bind(ctx)
	defer release()
	return s.c.readCapacity(ctx, lun)
}

// ReadKeys returns the registered reservation keys, one per registered
// I_T nexus (PERSISTENT RESERVE IN, READ KEYS).
func (s *Session) ReadKeys(ctx context.Context, lun int) ([]uint64, error) {
	cdb := make([]byte, 10)
	cdb[0] = 0x5e
	cdb[1] = 0x00
	binary.BigEndian.PutUint16(cdb[7:9], 8+8*64)
	data, err := s.do(ctx, lun, "read keys", cdb, 8+8*64, nil)
	if err != nil {
		return nil, err
	}
	return decodeKeys(data)
}

func decodeKeys(data []byte) ([]uint64, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("iscsi: read keys: %w: %d bytes", ErrMalformedPDU, len(data))
	}
	n := int(binary.BigEndian.Uint32(data[4:8]))
	if n%8 != 0 {
		return nil, fmt.Errorf("iscsi: read keys: %w: key list of %d bytes", ErrMalformedPDU, n)
	}
	body := data[8:]
	if n < len(body) {
		body = body[:n]
	}
	keys := make([]uint64, 0, len(body)/8)
	for len(body) >= 8 {
		keys = append(keys, binary.BigEndian.Uint64(body[:8]))
		body = body[8:]
	}
	return keys, nil
}

// ReadReservation returns the reservation held on the unit, or nil.
func (s *Session) ReadReservation(ctx context.Context, lun int) (*Reservation, error) {
	cdb := make([]byte, 10)
	cdb[0] = 0x5e
	cdb[1] = 0x01
	binary.BigEndian.PutUint16(cdb[7:9], 24)
	data, err := s.do(ctx, lun, "read reservation", cdb, 24, nil)
	if err != nil {
		return nil, err
	}
	if len(data) < 8 {
		return nil, fmt.Errorf("iscsi: read reservation: %w: %d bytes", ErrMalformedPDU, len(data))
	}
	if binary.BigEndian.Uint32(data[4:8]) == 0 {
		return nil, nil
	}
	if len(data) < 22 {
		return nil, fmt.Errorf("iscsi: read reservation: %w: %d bytes", ErrMalformedPDU, len(data))
	}
	return &Reservation{Key: binary.BigEndian.Uint64(data[8:16]), Type: ReservationType(data[21] & 0x0f)}, nil
}

func (s *Session) reserveOut(ctx context.Context, lun int, op string, action byte, typ ReservationType, key, sark uint64) error {
	cdb := make([]byte, 10)
	cdb[0] = 0x5f
	cdb[1] = action
	cdb[2] = byte(typ) & 0x0f // scope 0: the logical unit
	binary.BigEndian.PutUint32(cdb[5:9], 24)
	param := make([]byte, 24)
	binary.BigEndian.PutUint64(param[0:8], key)
	binary.BigEndian.PutUint64(param[8:16], sark)
	_, err := s.do(ctx, lun, op, cdb, 0, param)
	return err
}

// Register registers key for this session's initiator, replacing any key it
// had (REGISTER AND IGNORE EXISTING KEY).
func (s *Session) Register(ctx context.Context, lun int, key uint64) error {
	return s.reserveOut(ctx, lun, "register", proRegisterIgnore, 0, 0, key)
}

// Unregister removes this initiator's key, which also releases a
// registrants-only reservation it held.
func (s *Session) Unregister(ctx context.Context, lun int, key uint64) error {
	return s.reserveOut(ctx, lun, "unregister", proRegister, 0, key, 0)
}

// Reserve takes the reservation with this initiator's registered key.
func (s *Session) Reserve(ctx context.Context, lun int, key uint64, typ ReservationType) error {
	return s.reserveOut(ctx, lun, "reserve", proReserve, typ, key, 0)
}

// PreemptAbort removes every registration with key victim (taking over its
// reservation if it held one) and aborts its outstanding commands.
func (s *Session) PreemptAbort(ctx context.Context, lun int, key, victim uint64, typ ReservationType) error {
	return s.reserveOut(ctx, lun, "preempt and abort", proPreemptAbort, typ, key, victim)
}

// Preempt is PreemptAbort without aborting the victim's queued commands.
func (s *Session) Preempt(ctx context.Context, lun int, key, victim uint64, typ ReservationType) error {
	return s.reserveOut(ctx, lun, "preempt", proPreempt, typ, key, victim)
}

// preempt prefers PREEMPT AND ABORT and falls back to PREEMPT on targets
// that do not implement it (tgt 1.0.85 answers INVALID FIELD IN CDB). The
// registration is removed either way, so the old writer's next command is
// refused; only a command it had already queued could still land.
func (s *Session) preempt(ctx context.Context, lun int, key, victim uint64, typ ReservationType) error {
	err := s.PreemptAbort(ctx, lun, key, victim, typ)
	var se *SCSIError
	if errors.As(err, &se) && se.Status == statusCheckCondition && se.Key == senseIllegalRequest && se.ASC == ascInvalidFieldInCDB {
		return s.Preempt(ctx, lun, key, victim, typ)
	}
	return err
}

// TakeOver makes generation gen the only writer of the unit: the same
// sequence the HostLogin backend runs with sg_persist (see takeOver), in
// pure Go. It fails with storage.ErrStaleGeneration when a newer generation
// is registered and storage.ErrInUse when another initiator holds gen.
func (s *Session) TakeOver(ctx context.Context, lun int, gen uint64) error {
	return takeOver(ctx, sessionPR{s, lun}, gen)
}

// sessionPR is a unit's reservations seen through a Session.
type sessionPR struct {
	s   *Session
	lun int
}

func (p sessionPR) state(ctx context.Context) ([]uint64, *uint64, error) {
	keys, err := p.s.ReadKeys(ctx, p.lun)
	if err != nil {
		return nil, nil, err
	}
	r, err := p.s.ReadReservation(ctx, p.lun)
	if err != nil || r == nil {
		return keys, nil, err
	}
	return keys, &r.Key, nil
}

func (p sessionPR) register(ctx context.Context, key uint64) error {
	return p.s.Register(ctx, p.lun, key)
}

func (p sessionPR) reserve(ctx context.Context, key uint64) error {
	return p.s.Reserve(ctx, p.lun, key, WriteExclusiveRegistrantsOnly)
}

func (p sessionPR) preempt(ctx context.Context, key, victim uint64) error {
	return p.s.preempt(ctx, p.lun, key, victim, WriteExclusiveRegistrantsOnly)
}

func (p sessionPR) unregister(ctx context.Context, key uint64) error {
	return p.s.Unregister(ctx, p.lun, key)
}

// Write writes data (whole blocks of blockSize) at lba with WRITE(10).
func (s *Session) Write(ctx context.Context, lun int, lba uint32, blockSize int, data []byte) error {
	if blockSize <= 0 || len(data) == 0 || len(data)%blockSize != 0 || len(data)/blockSize > 0xffff {
		return fmt.Errorf("iscsi: write of %d bytes is not whole %d-byte blocks", len(data), blockSize)
	}
	cdb := make([]byte, 10)
	cdb[0] = 0x2a
	binary.BigEndian.PutUint32(cdb[2:6], lba)
	binary.BigEndian.PutUint16(cdb[7:9], uint16(len(data)/blockSize))
	_, err := s.do(ctx, lun, "write", cdb, 0, data)
	return err
}

// Read reads blocks blocks of blockSize at lba with READ(10).
func (s *Session) Read(ctx context.Context, lun int, lba uint32, blocks, blockSize int) ([]byte, error) {
	if blocks <= 0 || blocks > 0xffff || blockSize <= 0 || blocks*blockSize > maxDataSegment {
		return nil, fmt.Errorf("iscsi: read of %d blocks of %d bytes is out of range", blocks, blockSize)
	}
	cdb := make([]byte, 10)
	cdb[0] = 0x28
	binary.BigEndian.PutUint32(cdb[2:6], lba)
	binary.BigEndian.PutUint16(cdb[7:9], uint16(blocks))
	return s.do(ctx, lun, "read", cdb, blocks*blockSize, nil)
}

// prDevice is a logical unit's persistent reservations as this host's
// initiator sees them, through sg_persist (HostLogin) or a Session.
type prDevice interface {
	// state returns the registered keys (one per registered I_T nexus) and
	// the reservation holder's key, nil if none is held.
	state(ctx context.Context) (keys []uint64, holder *uint64, err error)
	register(ctx context.Context, key uint64) error // REGISTER AND IGNORE EXISTING KEY
	reserve(ctx context.Context, key uint64) error  // type 5
	preempt(ctx context.Context, key, victim uint64) error
	unregister(ctx context.Context, key uint64) error
}

// checkGeneration refuses a take-over that would undo a newer one.
func checkGeneration(keys []uint64, holder *uint64, gen uint64) error {
	if gen == 0 {
		return fmt.Errorf("generation 0 cannot be a reservation key (SCSI reserves key 0): %w", storage.ErrInvalidVolume)
	}
	for _, k := range keys {
		if k > gen {
			return fmt.Errorf("key 0x%x (a newer generation) is registered, this host has %d: %w", k, gen, storage.ErrStaleGeneration)
		}
	}
	if holder != nil && *holder > gen {
		return fmt.Errorf("the reservation is held with key 0x%x (a newer generation), this host has %d: %w", *holder, gen, storage.ErrStaleGeneration)
	}
	return nil
}

// takeOver makes generation gen the only registered writer of d. It is the
// one place the rule lives; HostLogin (sg_persist) and Session.TakeOver
// (pure Go) both run it.
//
//  1. Read keys and holder. A newer key means this host is the old writer
//     (storage.ErrStaleGeneration); gen itself held means another host
//     claims this generation (storage.ErrInUse).
//  2. Register key gen for this initiator, replacing whatever key it had
//     (so a host moving to a newer generation, or restarted, re-keys its
//     own registration instead of having to preempt itself).
//  3. Read again: what is left besides gen belongs to older writers. A
//     newer key that appeared meanwhile wins: unregister and step back.
//  4. Reserve (type 5) if nobody holds the reservation, and preempt-and-
//     abort every other key, once per key (a host with two paths shows its
//     key twice). Preempting the holder's key takes the reservation over;
//     aborting its queued commands keeps a write it already sent from
//     landing after the hand-over.
func takeOver(ctx context.Context, d prDevice, gen uint64) error {
	keys, holder, err := d.state(ctx)
	if err != nil {
		return err
	}
	if err := checkGeneration(keys, holder, gen); err != nil {
		return err
	}
	if holder != nil && *holder == gen {
		return fmt.Errorf("the reservation with key 0x%x (generation %d) is already held, not by this attach: %w", gen, gen, storage.ErrInUse)
	}
	if err := d.register(ctx, gen); err != nil {
		return err
	}
	keys, holder, err = d.state(ctx)
	if err != nil {
		return err
	}
	if err := checkGeneration(keys, holder, gen); err != nil {
		// Registered after a newer writer read the keys: it would not
		// preempt this registration, so remove it ourselves.
		_ = d.unregister(ctx, gen)
		return err
	}
	if holder == nil {
		if err := d.reserve(ctx, gen); err != nil {
			return err
		}
	}
	seen := map[uint64]bool{gen: true}
	victims := keys
	if holder != nil {
		victims = append(append([]uint64{}, keys...), *holder)
	}
	for _, k := range victims {
		if seen[k] {
			continue
		}
		seen[k] = true
		if err := d.preempt(ctx, gen, k); err != nil {
			return err
		}
	}
	return nil
}
