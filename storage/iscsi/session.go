package iscsi

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/wire"
)

// DefaultPort is the iSCSI port a portal without one means.
const DefaultPort = 3260

// conn is one iSCSI connection of a single-connection session, just enough
// of an initiator to log in, ask a question and log out. It is not safe for
// concurrent use; each probe opens its own.
type conn struct {
	nc        net.Conn
	portal    string
	target    string // TargetName, empty for a discovery session
	initiator string
	isid      [6]byte
	tsih      uint16
	nextITT   uint32
	cmdSN     uint32
	expStatSN uint32
	// stop ends the binding of nc to the conversation's context.
	stop func()

	// Negotiated for write-direction commands: whether data may ride in
	// the command PDU, how much of it, and the most the target accepts in
	// one PDU.
	immediate  bool
	firstBurst int
	maxXmit    int
}

// dial connects to portal ("host" or "host:port"). A connection failure is
// storage.ErrUnreachable: the server did not answer. ctx bounds the whole
// conversation, not only the connect, because a target that accepts and then
// stalls is as unreachable as one that never answers.
func dial(ctx context.Context, portal, initiator string) (*conn, error) {
	addr, err := portalAddr(portal)
	if err != nil {
		return nil, err
	}
	nc, stop, err := wire.Dial(ctx, addr, nil, "iscsi: connect to portal "+addr, "check the target is running and the portal address")
	if err != nil {
		return nil, err
	}
	c := newConn(nc, addr, initiator)
	c.stop = stop
	if _, err := rand.Read(c.isid[1:4]); err != nil {
		c.close()
		return nil, fmt.Errorf("iscsi: session id: %w", err)
	}
	c.isid[0] = 0x80 // ISID type "random" (RFC 7143 section 11.12.5)
	return c, nil
}

// portalAddr normalizes a portal to host:port.
func portalAddr(portal string) (string, error) {
	if portal == "" {
		return "", fmt.Errorf("iscsi: empty portal: %w", storage.ErrInvalidVolume)
	}
	host, port, err := net.SplitHostPort(portal)
	if err != nil {
		// No port: the whole string is the host (IPv6 literals need brackets
		// only when a port follows).
		return net.JoinHostPort(portal, strconv.Itoa(DefaultPort)), nil
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("iscsi: portal %q has a bad port: %w", portal, storage.ErrInvalidVolume)
	}
	return net.JoinHostPort(host, port), nil
}

// newConn is a connection in the state before login, with the limits this
// initiator declares. The caller sets isid and stop.
func newConn(nc net.Conn, portal, initiator string) *conn {
	return &conn{nc: nc, portal: portal, initiator: initiator, nextITT: 1, cmdSN: 1, firstBurst: 65536, maxXmit: 8192}
}

func (c *conn) close() {
	c.stop()
	c.nc.Close()
}

// wireErr turns a read/write failure into an error that says what the
// caller can branch on: a deadline or a dropped connection means the target
// did not answer.
func (c *conn) wireErr(ctx context.Context, step string, err error) error {
	what := fmt.Sprintf("iscsi: %s with %s", step, c.portal)
	if terr := wire.Timeout(ctx, what, err); terr != nil {
		return terr
	}
	if errors.Is(err, ErrMalformedPDU) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%s: target closed the connection: %w", what, storage.ErrUnreachable)
	}
	return wire.Broken(what, err)
}

func (c *conn) send(p *pdu) error {
	_, err := c.nc.Write(p.encode())
	return err
}

// recv returns the next PDU meant for the caller. It answers the target's
// pings and drops asynchronous events, which a short probe has no use for.
func (c *conn) recv() (*pdu, error) {
	for {
		p, err := readPDU(c.nc)
		if err != nil {
			return nil, err
		}
		switch p.opcode() {
		case opNOPIn:
			if p.ttt() != noTag {
				out := &pdu{}
				out.bhs[0] = opNOPOut | immediateBit
				out.bhs[1] = finalBit
				copy(out.bhs[8:16], p.bhs[8:16])
				out.setU32(16, noTag)
				out.setU32(20, p.ttt())
				out.setU32(24, c.cmdSN)
				out.setU32(28, c.expStatSN)
				if err := c.send(out); err != nil {
					return nil, err
				}
			}
			continue
		case opAsyncMsg:
			c.expStatSN = p.statSN() + 1
			continue
		case opReject:
			return nil, fmt.Errorf("%w: target rejected a PDU (reason 0x%02x)", ErrMalformedPDU, p.bhs[2])
		}
		return p, nil
	}
}

func (c *conn) newITT() uint32 {
	t := c.nextITT
	c.nextITT++
	if c.nextITT == noTag {
		c.nextITT = 1
	}
	return t
}

// Login stages (CSG/NSG values).
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// login runs the two-stage login: security negotiation offering only
// AuthMethod=None, then operational negotiation with conservative values
// (no digests, one outstanding R2T, error recovery level 0), ending in full
// feature phase. sessionType is "Normal" or "Discovery".
func (c *conn) login(ctx context.Context, sessionType, target string) error {
	c.target = target
	itt := c.newITT()
	sec := textKeys{
		{"InitiatorName", c.initiator},
		{"SessionType", sessionType},
	}
	if sessionType == "Normal" {
		sec = append(sec, keyValue{"TargetName", target})
	}
	sec = append(sec, keyValue{"AuthMethod", "None"})
	if err := c.loginStage(ctx, itt, stageSecurity, stageOperational, sec); err != nil {
		return err
	}
	op := textKeys{
		{"HeaderDigest", "None"},
		{"DataDigest", "None"},
		{"ErrorRecoveryLevel", "0"},
		{"MaxRecvDataSegmentLength", "65536"},
	}
	if sessionType == "Normal" {
		op = append(op,
			keyValue{"InitialR2T", "Yes"},
			keyValue{"ImmediateData", "Yes"},
			keyValue{"MaxBurstLength", "262144"},
			keyValue{"FirstBurstLength", "65536"},
			keyValue{"MaxOutstandingR2T", "1"},
			keyValue{"MaxConnections", "1"},
			keyValue{"DataPDUInOrder", "Yes"},
			keyValue{"DataSequenceInOrder", "Yes"},
			keyValue{"DefaultTime2Wait", "0"},
			keyValue{"DefaultTime2Retain", "0"},
		)
	}
	return c.loginStage(ctx, itt, stageOperational, stageFullFeature, op)
}

// loginStage sends keys in stage csg asking to move to nsg, and keeps
// exchanging (empty) Login requests until the target agrees to the
// transition. A target needs at most a few rounds; more is a broken target.
func (c *conn) loginStage(ctx context.Context, itt uint32, csg, nsg byte, keys textKeys) error {
	data := encodeText(keys)
	for round := 0; round < 8; round++ {
		req := &pdu{data: data}
		req.bhs[0] = opLoginReq | immediateBit
		req.bhs[1] = 0x80 | csg<<2 | nsg // Transit
		copy(req.bhs[8:14], c.isid[:])
		binary.BigEndian.PutUint16(req.bhs[14:16], c.tsih)
		req.setU32(16, itt)
		req.setU32(24, c.cmdSN)
		req.setU32(28, c.expStatSN)
		if err := c.send(req); err != nil {
			return c.wireErr(ctx, "login", err)
		}
		resp, err := c.recv()
		if err != nil {
			return c.wireErr(ctx, "login", err)
		}
		if resp.opcode() != opLoginResp {
			return fmt.Errorf("iscsi: login with %s: %w: expected a Login Response, got opcode 0x%02x", c.portal, ErrMalformedPDU, resp.opcode())
		}
		c.expStatSN = resp.statSN() + 1
		if class, detail := resp.bhs[36], resp.bhs[37]; class != loginSuccess {
			lerr := &LoginError{Target: c.target, Class: class, Detail: detail}
			if class == loginInitiatorErr && (detail == detailNotFound || detail == detailTargetGone) {
				return fmt.Errorf("%w: %w", storage.ErrNotFound, lerr)
			}
			return lerr
		}
		got, err := parseText(resp.data)
		if err != nil {
			return fmt.Errorf("iscsi: login with %s: %w", c.portal, err)
		}
		if v, ok := got.get("AuthMethod"); ok && v != "None" {
			return &LoginError{Target: c.target, Class: loginInitiatorErr, Detail: detailAuthFailed}
		}
		c.negotiated(got)
		data = nil // answered keys are not repeated
		flags := resp.flags()
		if flags&0x80 != 0 {
			if respNSG := flags & 0x03; respNSG != nsg {
				return fmt.Errorf("iscsi: login with %s: %w: target moved to stage %d, expected %d", c.portal, ErrMalformedPDU, respNSG, nsg)
			}
			if nsg == stageFullFeature {
				c.tsih = binary.BigEndian.Uint16(resp.bhs[14:16])
			}
			return nil
		}
	}
	return fmt.Errorf("iscsi: login with %s: target never completed stage %d: %w", c.portal, csg, ErrMalformedPDU)
}

// negotiated records the target's answers that shape write commands (RFC
// 7143 section 13: ImmediateData is the AND of both sides, the burst the
// minimum). Values that do not parse keep the conservative defaults.
func (c *conn) negotiated(kv textKeys) {
	if v, ok := kv.get("ImmediateData"); ok {
		c.immediate = v == "Yes"
	}
	if v, ok := kv.get("FirstBurstLength"); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 512 && n < c.firstBurst {
			c.firstBurst = n
		}
	}
	if v, ok := kv.get("MaxRecvDataSegmentLength"); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 512 && n <= maxDataSegment {
			c.maxXmit = n
		}
	}
}

// text sends a Text request and gathers the full answer, following the
// target's continuation (C bit) across PDUs before parsing, since a key may
// be split between them.
func (c *conn) text(ctx context.Context, keys textKeys) (textKeys, error) {
	itt := c.newITT()
	ttt := uint32(noTag)
	data := encodeText(keys)
	var answer []byte
	for round := 0; round < 64; round++ {
		req := &pdu{data: data}
		req.bhs[0] = opTextReq
		req.bhs[1] = finalBit
		req.setU32(16, itt)
		req.setU32(20, ttt)
		req.setU32(24, c.cmdSN)
		req.setU32(28, c.expStatSN)
		if err := c.send(req); err != nil {
			return nil, c.wireErr(ctx, "text request", err)
		}
		c.cmdSN++
		resp, err := c.recv()
		if err != nil {
			return nil, c.wireErr(ctx, "text request", err)
		}
		if resp.opcode() != opTextResp || resp.itt() != itt {
			return nil, fmt.Errorf("iscsi: text request to %s: %w: unexpected opcode 0x%02x", c.portal, ErrMalformedPDU, resp.opcode())
		}
		c.expStatSN = resp.statSN() + 1
		answer = append(answer, resp.data...)
		if len(answer) > maxDataSegment {
			return nil, fmt.Errorf("iscsi: text request to %s: %w: answer exceeds %d bytes", c.portal, ErrMalformedPDU, maxDataSegment)
		}
		if resp.flags()&0x40 == 0 { // not continued
			return parseText(answer)
		}
		ttt = resp.ttt()
		data = nil
	}
	return nil, fmt.Errorf("iscsi: text request to %s: %w: answer never ended", c.portal, ErrMalformedPDU)
}

// logout closes the session politely; a failure here is not worth
// reporting, since the probe already has its answer.
func (c *conn) logout(ctx context.Context) {
	req := &pdu{}
	req.bhs[0] = opLogoutReq | immediateBit
	req.bhs[1] = finalBit // reason 0: close the session
	req.setU32(16, c.newITT())
	req.setU32(24, c.cmdSN)
	req.setU32(28, c.expStatSN)
	if c.send(req) != nil {
		return
	}
	for {
		p, err := c.recv()
		if err != nil || p.opcode() == opLogoutResp {
			return
		}
	}
}
