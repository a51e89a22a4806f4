package iscsi

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/xenha/xenha/storage"
)

// SCSI status codes (SAM-5) the probe tells apart.
const (
	statusGood                = 0x00
	statusCheckCondition      = 0x02
	statusBusy                = 0x08
	statusReservationConflict = 0x18
)

// Sense keys and additional sense codes the probe tells apart.
const (
	senseIllegalRequest  = 0x05
	senseUnitAttention   = 0x06
	ascLUNNotSupported   = 0x25
	ascInvalidFieldInCDB = 0x24
)

// SCSIError is a command the logical unit completed with a status other than
// GOOD, with its decoded sense data.
type SCSIError struct {
	Target string
	LUN    int
	Op     string
	Status byte
	// Key, ASC and ASCQ come from the sense data (CHECK CONDITION only).
	Key, ASC, ASCQ byte
}

func (e *SCSIError) Error() string {
	switch e.Status {
	case statusReservationConflict:
		return fmt.Sprintf("iscsi: %s on %s LUN %d: reservation conflict; another host holds the persistent reservation", e.Op, e.Target, e.LUN)
	case statusCheckCondition:
		return fmt.Sprintf("iscsi: %s on %s LUN %d: check condition, sense key 0x%x ASC/ASCQ 0x%02x/0x%02x", e.Op, e.Target, e.LUN, e.Key, e.ASC, e.ASCQ)
	}
	return fmt.Sprintf("iscsi: %s on %s LUN %d: SCSI status 0x%02x", e.Op, e.Target, e.LUN, e.Status)
}

// Unwrap maps the statuses callers branch on to storage's sentinels.
func (e *SCSIError) Unwrap() error {
	switch {
	case e.Status == statusReservationConflict:
		return storage.ErrInUse
	case e.Status == statusCheckCondition && e.Key == senseIllegalRequest && e.ASC == ascLUNNotSupported:
		return storage.ErrNotFound
	}
	return nil
}

// parseSense decodes fixed (0x70/0x71) and descriptor (0x72/0x73) format
// sense data. Short or unknown data yields zeros, not an error: the status
// alone still says the command failed.
func parseSense(b []byte) (key, asc, ascq byte) {
	if len(b) < 1 {
		return 0, 0, 0
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		if len(b) >= 14 {
			return b[2] & 0x0f, b[12], b[13]
		}
		if len(b) >= 3 {
			return b[2] & 0x0f, 0, 0
		}
	case 0x72, 0x73:
		if len(b) >= 4 {
			return b[1] & 0x0f, b[2], b[3]
		}
	}
	return 0, 0, 0
}

// command runs one SCSI command: read-direction when expLen > 0 (returning
// the Data-In), write-direction when out is not nil (sending out as
// immediate data and in answer to R2Ts), or without data. A status other
// than GOOD is a *SCSIError.
func (c *conn) command(ctx context.Context, lun int, op string, cdb []byte, expLen int, out []byte) ([]byte, error) {
	itt := c.newITT()
	req := &pdu{}
	req.bhs[0] = opSCSICmd
	req.bhs[1] = finalBit | 0x01 // simple task attribute
	l := encodeLUN(lun)
	copy(req.bhs[8:16], l[:])
	req.setU32(16, itt)
	req.setU32(20, uint32(expLen))
	switch {
	case out != nil:
		req.bhs[1] |= 0x20 // Write
		req.setU32(20, uint32(len(out)))
		if c.immediate {
			req.data = out[:min(len(out), c.firstBurst, c.maxXmit)]
		}
	case expLen > 0:
		req.bhs[1] |= 0x40 // Read
	}
	req.setU32(24, c.cmdSN)
	req.setU32(28, c.expStatSN)
	copy(req.bhs[32:48], cdb)
	if err := c.send(req); err != nil {
		return nil, c.wireErr(ctx, op, err)
	}
	c.cmdSN++
	buf := make([]byte, expLen)
	got := 0
	for {
		p, err := c.recv()
		if err != nil {
			return nil, c.wireErr(ctx, op, err)
		}
		if p.itt() != itt {
			return nil, fmt.Errorf("iscsi: %s on %s: %w: answer for task 0x%x, expected 0x%x", op, c.target, ErrMalformedPDU, p.itt(), itt)
		}
		switch p.opcode() {
		case opR2T:
			if err := c.answerR2T(ctx, p, l, itt, out, op); err != nil {
				return nil, err
			}
		case opDataIn:
			off := int(p.u32(40))
			if off < 0 || off+len(p.data) > len(buf) {
				return nil, fmt.Errorf("iscsi: %s on %s: %w: Data-In at offset %d+%d exceeds the %d bytes asked for", op, c.target, ErrMalformedPDU, off, len(p.data), len(buf))
			}
			copy(buf[off:], p.data)
			if end := off + len(p.data); end > got {
				got = end
			}
			if p.flags()&0x01 != 0 { // status carried in the last Data-In
				c.expStatSN = p.statSN() + 1
				if st := p.bhs[3]; st != statusGood {
					return nil, &SCSIError{Target: c.target, LUN: lun, Op: op, Status: st}
				}
				return buf[:got], nil
			}
		case opSCSIResp:
			c.expStatSN = p.statSN() + 1
			if resp := p.bhs[2]; resp != 0 {
				return nil, fmt.Errorf("iscsi: %s on %s LUN %d: target failure (iSCSI response 0x%02x); retry or check the target", op, c.target, lun, resp)
			}
			st := p.bhs[3]
			if st == statusGood {
				return buf[:got], nil
			}
			e := &SCSIError{Target: c.target, LUN: lun, Op: op, Status: st}
			if st == statusCheckCondition && len(p.data) >= 2 {
				n := int(binary.BigEndian.Uint16(p.data[:2]))
				sense := p.data[2:]
				if n < len(sense) {
					sense = sense[:n]
				}
				e.Key, e.ASC, e.ASCQ = parseSense(sense)
			}
			return nil, e
		default:
			return nil, fmt.Errorf("iscsi: %s on %s: %w: unexpected opcode 0x%02x", op, c.target, ErrMalformedPDU, p.opcode())
		}
	}
}

// answerR2T sends the part of out the target asked for, in Data-Out PDUs no
// larger than it accepts.
func (c *conn) answerR2T(ctx context.Context, r2t *pdu, lun [8]byte, itt uint32, out []byte, op string) error {
	off, n := int(r2t.u32(40)), int(r2t.u32(44))
	if off < 0 || n <= 0 || off+n > len(out) {
		return fmt.Errorf("iscsi: %s on %s: %w: R2T for bytes %d+%d of %d", op, c.target, ErrMalformedPDU, off, n, len(out))
	}
	for sn := uint32(0); n > 0; sn++ {
		chunk := min(n, c.maxXmit)
		d := &pdu{data: out[off : off+chunk]}
		d.bhs[0] = opDataOut
		if chunk == n {
			d.bhs[1] = finalBit
		}
		copy(d.bhs[8:16], lun[:])
		d.setU32(16, itt)
		d.setU32(20, r2t.ttt())
		d.setU32(28, c.expStatSN)
		d.setU32(36, sn)
		d.setU32(40, uint32(off))
		if err := c.send(d); err != nil {
			return c.wireErr(ctx, op, err)
		}
		off += chunk
		n -= chunk
	}
	return nil
}

// Capacity is a logical unit's size as READ CAPACITY reports it.
type Capacity struct {
	// Blocks is the number of logical blocks (last LBA + 1).
	Blocks uint64
	// BlockSize is the logical block length in bytes.
	BlockSize uint32
}

// Bytes is the unit's size in bytes.
func (c Capacity) Bytes() uint64 { return c.Blocks * uint64(c.BlockSize) }

// readCapacity asks READ CAPACITY(16) and falls back to (10) for units that
// do not know it; a unit attention left over from login (power on, reset) is
// consumed and the command repeated.
func (c *conn) readCapacity(ctx context.Context, lun int) (Capacity, error) {
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		cdb := make([]byte, 16)
		cdb[0] = 0x9e // SERVICE ACTION IN(16)
		cdb[1] = 0x10 // READ CAPACITY(16)
		binary.BigEndian.PutUint32(cdb[10:14], 32)
		data, err := c.command(ctx, lun, "read capacity(16)", cdb, 32, nil)
		if err == nil {
			return decodeCapacity16(data)
		}
		se, ok := err.(*SCSIError)
		if !ok {
			return Capacity{}, err
		}
		lastErr = err
		switch {
		case se.Status == statusCheckCondition && se.Key == senseUnitAttention:
			continue
		case se.Status == statusCheckCondition && se.Key == senseIllegalRequest && se.ASC != ascLUNNotSupported:
			return c.readCapacity10(ctx, lun)
		case se.Status == statusBusy:
			continue
		}
		return Capacity{}, err
	}
	return Capacity{}, lastErr
}

func (c *conn) readCapacity10(ctx context.Context, lun int) (Capacity, error) {
	cdb := make([]byte, 10)
	cdb[0] = 0x25
	data, err := c.command(ctx, lun, "read capacity(10)", cdb, 8, nil)
	if err != nil {
		return Capacity{}, err
	}
	if len(data) < 8 {
		return Capacity{}, fmt.Errorf("iscsi: read capacity(10) on %s: %w: %d bytes of data, need 8", c.target, ErrMalformedPDU, len(data))
	}
	return Capacity{
		Blocks:    uint64(binary.BigEndian.Uint32(data[0:4])) + 1,
		BlockSize: binary.BigEndian.Uint32(data[4:8]),
	}, nil
}

func decodeCapacity16(data []byte) (Capacity, error) {
	if len(data) < 12 {
		return Capacity{}, fmt.Errorf("iscsi: read capacity(16): %w: %d bytes of data, need 12", ErrMalformedPDU, len(data))
	}
	return Capacity{
		Blocks:    binary.BigEndian.Uint64(data[0:8]) + 1,
		BlockSize: binary.BigEndian.Uint32(data[8:12]),
	}, nil
}
