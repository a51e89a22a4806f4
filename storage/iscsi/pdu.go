package iscsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Opcodes of the PDUs the probe sends and understands (RFC 7143 section 11).
const (
	opNOPOut     = 0x00
	opSCSICmd    = 0x01
	opLoginReq   = 0x03
	opTextReq    = 0x04
	opDataOut    = 0x05
	opLogoutReq  = 0x06
	opNOPIn      = 0x20
	opSCSIResp   = 0x21
	opLoginResp  = 0x23
	opTextResp   = 0x24
	opDataIn     = 0x25
	opLogoutResp = 0x26
	opR2T        = 0x31
	opAsyncMsg   = 0x32
	opReject     = 0x3f
)

const (
	bhsLen = 48
	// maxDataSegment bounds what the decoder accepts from a target; the
	// probe declares far less (MaxRecvDataSegmentLength), so anything bigger
	// is a broken or hostile peer, not a reason to allocate 16 MiB.
	maxDataSegment = 1 << 20
	// immediateBit marks a request delivered outside CmdSN ordering.
	immediateBit = 0x40
	finalBit     = 0x80
	noTag        = 0xffffffff
)

// ErrMalformedPDU reports bytes from the target that are not a valid PDU.
var ErrMalformedPDU = errors.New("iscsi: malformed PDU")

// pdu is one iSCSI PDU: the 48-byte basic header segment, any additional
// header segments and the data segment (without its padding). Digests are
// never negotiated by the probe, so there are none.
type pdu struct {
	bhs  [bhsLen]byte
	ahs  []byte
	data []byte
}

func (p *pdu) opcode() byte       { return p.bhs[0] & 0x3f }
func (p *pdu) flags() byte        { return p.bhs[1] }
func (p *pdu) itt() uint32        { return binary.BigEndian.Uint32(p.bhs[16:20]) }
func (p *pdu) ttt() uint32        { return binary.BigEndian.Uint32(p.bhs[20:24]) }
func (p *pdu) statSN() uint32     { return binary.BigEndian.Uint32(p.bhs[24:28]) }
func (p *pdu) u32(off int) uint32 { return binary.BigEndian.Uint32(p.bhs[off : off+4]) }

func (p *pdu) setU32(off int, v uint32) { binary.BigEndian.PutUint32(p.bhs[off:off+4], v) }

// encode renders p with its data segment padded to a 4-byte boundary.
func (p *pdu) encode() []byte {
	p.bhs[4] = byte(len(p.ahs) / 4)
	n := len(p.data)
	p.bhs[5], p.bhs[6], p.bhs[7] = byte(n>>16), byte(n>>8), byte(n)
	out := make([]byte, 0, bhsLen+len(p.ahs)+pad4(n))
	out = append(out, p.bhs[:]...)
	out = append(out, p.ahs...)
	out = append(out, p.data...)
	return append(out, make([]byte, pad4(n)-n)...)
}

func pad4(n int) int { return (n + 3) &^ 3 }

// readPDU decodes one PDU from r. It never trusts a length from the wire
// beyond maxDataSegment.
func readPDU(r io.Reader) (*pdu, error) {
	p := &pdu{}
	if _, err := io.ReadFull(r, p.bhs[:]); err != nil {
		return nil, err
	}
	return p, p.readRest(r)
}

func (p *pdu) readRest(r io.Reader) error {
	ahsLen := int(p.bhs[4]) * 4
	dataLen := int(p.bhs[5])<<16 | int(p.bhs[6])<<8 | int(p.bhs[7])
	if dataLen > maxDataSegment {
		return fmt.Errorf("%w: opcode 0x%02x announces a %d-byte data segment (limit %d)", ErrMalformedPDU, p.opcode(), dataLen, maxDataSegment)
	}
	if ahsLen > 0 {
		p.ahs = make([]byte, ahsLen)
		if _, err := io.ReadFull(r, p.ahs); err != nil {
			return fmt.Errorf("%w: truncated additional header: %v", ErrMalformedPDU, err)
		}
	}
	if dataLen > 0 {
		buf := make([]byte, pad4(dataLen))
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("%w: truncated data segment (%d bytes announced): %v", ErrMalformedPDU, dataLen, err)
		}
		p.data = buf[:dataLen]
	}
	return nil
}

// decodePDU parses exactly one PDU from b, for the fuzzer and recorded-byte
// tests; trailing bytes are an error.
func decodePDU(b []byte) (*pdu, error) {
	r := bytes.NewReader(b)
	p, err := readPDU(r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %d bytes is shorter than a header", ErrMalformedPDU, len(b))
		}
		return nil, err
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformedPDU, r.Len())
	}
	return p, nil
}

// textKeys is an ordered list of key=value pairs, the payload of Login and
// Text PDUs. Order matters on the wire (SendTargets answers repeat
// TargetName then TargetAddress), so it is a slice, not a map.
type textKeys []keyValue

type keyValue struct{ Key, Value string }

// encodeText renders pairs as NUL-terminated key=value strings.
func encodeText(kv textKeys) []byte {
	var b bytes.Buffer
	for _, p := range kv {
		b.WriteString(p.Key)
		b.WriteByte('=')
		b.WriteString(p.Value)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// parseText splits a data segment into key=value pairs. A trailing run of
// NULs is padding; a pair without '=' is malformed.
func parseText(b []byte) (textKeys, error) {
	var kv textKeys
	for _, field := range strings.Split(string(b), "\x00") {
		if field == "" {
			continue
		}
		k, v, ok := strings.Cut(field, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: text field %q is not key=value", ErrMalformedPDU, truncate(field, 64))
		}
		kv = append(kv, keyValue{k, v})
	}
	return kv, nil
}

func (kv textKeys) get(key string) (string, bool) {
	for _, p := range kv {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// String renders the pairs sorted, for error messages.
func (kv textKeys) String() string {
	s := make([]string, len(kv))
	for i, p := range kv {
		s[i] = p.Key + "=" + p.Value
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// encodeLUN renders a LUN in the 8-byte SAM format: peripheral addressing
// below 256, flat addressing up to 16383.
func encodeLUN(lun int) [8]byte {
	var b [8]byte
	if lun < 256 {
		b[1] = byte(lun)
	} else {
		b[0] = 0x40 | byte(lun>>8)
		b[1] = byte(lun)
	}
	return b
}

// Login status classes and the details the probe distinguishes (RFC 7143
// section 11.13.5).
const (
	loginSuccess       = 0x00
	loginRedirect      = 0x01
	loginInitiatorErr  = 0x02
	loginTargetErr     = 0x03
	detailAuthFailed   = 0x01
	detailForbidden    = 0x02
	detailNotFound     = 0x03
	detailTargetGone   = 0x04
	detailTooManyConns = 0x06
)

// LoginError is a login the target refused, with its status class and detail.
type LoginError struct {
	Target string
	Class  byte
	Detail byte
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("iscsi: target %q refused login: %s (status 0x%02x%02x)", e.Target, loginStatusText(e.Class, e.Detail), e.Class, e.Detail)
}

func loginStatusText(class, detail byte) string {
	switch {
	case class == loginRedirect:
		return "target moved (redirect); point the volume at its new portal"
	case class == loginInitiatorErr && detail == detailAuthFailed:
		return "authentication failed; the probe only speaks AuthMethod=None, so disable CHAP for this initiator"
	case class == loginInitiatorErr && detail == detailForbidden:
		return "initiator not authorized; bind it on the target (ACL)"
	case class == loginInitiatorErr && (detail == detailNotFound || detail == detailTargetGone):
		return "no such target on this portal; check the IQN"
	case class == loginInitiatorErr && detail == detailTooManyConns:
		return "too many connections"
	case class == loginInitiatorErr:
		return "initiator error"
	case class == loginTargetErr:
		return "target error (out of resources or service unavailable); retry later"
	}
	return "unknown status"
}
