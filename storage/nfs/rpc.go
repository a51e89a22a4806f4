package nfs

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/xenha/xenha/storage/internal/wire"
)

// ONC RPC constants (RFC 5531) and the programs the probe calls.
const (
	rpcCall    = 0
	rpcReply   = 1
	rpcVersion = 2

	msgAccepted = 0
	msgDenied   = 1

	authNone = 0
	authSys  = 1

	progPortmap = 100000
	progNFS     = 100003
	progMount   = 100005

	// maxRecord bounds a reply the decoder will assemble; the probe's
	// replies are a few hundred bytes.
	maxRecord = 1 << 20
)

// RPCError is a call the server answered with something other than success
// at the RPC layer: program not registered, version mismatch, auth refused.
type RPCError struct {
	Server string
	Prog   uint32
	Vers   uint32
	Proc   uint32
	Detail string
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("nfs: rpc %s to program %d v%d procedure %d on %s", e.Detail, e.Prog, e.Vers, e.Proc, e.Server)
}

// rpcConn is one TCP connection carrying RPC calls in record marking. It is
// not safe for concurrent use.
type rpcConn struct {
	nc     net.Conn
	addr   string
	xid    uint32
	cred   []byte // encoded opaque_auth for every call
	stop   func() // ends the binding of nc to the conversation's context
	reader io.Reader
}

// dialRPC connects to addr; ctx bounds the whole conversation, because a
// server that accepts and then stalls (a hung nfsd) is as unreachable as
// one that never answers.
func dialRPC(ctx context.Context, addr string, cfg *probeConfig) (*rpcConn, error) {
	nc, stop, err := wire.Dial(ctx, addr, cfg.dial, "nfs: connect to "+addr, "check the NFS server and rpcbind are running")
	if err != nil {
		return nil, err
	}
	var seed [4]byte
	_, _ = rand.Read(seed[:])
	c := &rpcConn{nc: nc, addr: addr, xid: binary.BigEndian.Uint32(seed[:]), stop: stop, reader: nc}
	if cfg.xid != 0 {
		c.xid = cfg.xid
	}
	c.cred = authSysCred()
	return c, nil
}

// authSysCred is AUTH_SYS as root on host "xenha": exports commonly refuse
// AUTH_NONE, and a probe needs to read attributes, not to write.
func authSysCred() []byte {
	var body xdrWriter
	body.u32(0) // stamp
	body.str("xenha")
	body.u32(0) // uid
	body.u32(0) // gid
	body.u32(0) // no supplementary groups
	var w xdrWriter
	w.u32(authSys)
	w.opaque(body.b)
	return w.b
}

func (c *rpcConn) close() {
	c.stop()
	c.nc.Close()
}

// wireErr turns a failed call into an error that says what the caller can
// branch on: a server that stalls or drops the connection is unreachable.
func (c *rpcConn) wireErr(ctx context.Context, call string, err error) error {
	what := fmt.Sprintf("nfs: %s on %s", call, c.addr)
	if terr := wire.Timeout(ctx, what, err); terr != nil {
		return terr
	}
	if errors.Is(err, ErrMalformedReply) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return wire.Broken(what, err)
}

// call sends one call and returns the procedure's result bytes, after the
// RPC reply header has been checked.
func (c *rpcConn) call(ctx context.Context, what string, prog, vers, proc uint32, args []byte) ([]byte, error) {
	c.xid++
	var w xdrWriter
	w.u32(0) // record mark, filled in below
	w.u32(c.xid)
	w.u32(rpcCall)
	w.u32(rpcVersion)
	w.u32(prog)
	w.u32(vers)
	w.u32(proc)
	w.b = append(w.b, c.cred...)
	w.u32(authNone) // verifier
	w.u32(0)
	w.b = append(w.b, args...)
	binary.BigEndian.PutUint32(w.b[0:4], 0x80000000|uint32(len(w.b)-4))
	if _, err := c.nc.Write(w.b); err != nil {
		return nil, c.wireErr(ctx, what, err)
	}
	for {
		rec, err := readRecord(c.reader)
		if err != nil {
			return nil, c.wireErr(ctx, what, err)
		}
		xid, res, err := parseReply(rec, c.addr, prog, vers, proc)
		if err != nil {
			return nil, fmt.Errorf("nfs: %s: %w", what, err)
		}
		if xid != c.xid {
			continue // a late answer to an earlier call
		}
		return res, nil
	}
}

// readRecord assembles one RPC record from its fragments (RFC 5531 section
// 11): each fragment has a 4-byte header, the top bit marking the last.
func readRecord(r io.Reader) ([]byte, error) {
	var rec []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h & 0x7fffffff)
		if len(rec)+n > maxRecord {
			return nil, fmt.Errorf("%w: record of more than %d bytes", ErrMalformedReply, maxRecord)
		}
		start := len(rec)
		rec = append(rec, make([]byte, n)...)
		if _, err := io.ReadFull(r, rec[start:]); err != nil {
			return nil, fmt.Errorf("%w: truncated record fragment: %v", ErrMalformedReply, err)
		}
		if h&0x80000000 != 0 {
			return rec, nil
		}
	}
}

// parseReply checks an RPC reply header and returns the xid and the
// procedure's result. RPC-level refusals are *RPCError.
func parseReply(rec []byte, server string, prog, vers, proc uint32) (uint32, []byte, error) {
	r := &xdrReader{b: rec}
	xid := r.u32("xid")
	if mt := r.u32("message type"); r.err == nil && mt != rpcReply {
		r.fail("message type %d, expected a reply", mt)
	}
	stat := r.u32("reply status")
	if r.err != nil {
		return 0, nil, r.err
	}
	rerr := &RPCError{Server: server, Prog: prog, Vers: vers, Proc: proc}
	switch stat {
	case msgAccepted:
		r.u32("verifier flavor")
		r.opaque(400, "verifier")
		acc := r.u32("accept status")
		if r.err != nil {
			return 0, nil, r.err
		}
		switch acc {
		case 0:
			return xid, rec[r.off:], nil
		case 1:
			rerr.Detail = "program unavailable (not registered on this server)"
		case 2:
			lo, hi := r.u32("low version"), r.u32("high version")
			rerr.Detail = fmt.Sprintf("version mismatch (server speaks %d..%d)", lo, hi)
		case 3:
			rerr.Detail = "procedure unavailable"
		case 4:
			rerr.Detail = "garbage arguments"
		case 5:
			rerr.Detail = "system error on the server"
		default:
			rerr.Detail = fmt.Sprintf("accept status %d", acc)
		}
	case msgDenied:
		switch rs := r.u32("reject status"); rs {
		case 0:
			lo, hi := r.u32("low version"), r.u32("high version")
			rerr.Detail = fmt.Sprintf("RPC version mismatch (server speaks %d..%d)", lo, hi)
		case 1:
			rerr.Detail = fmt.Sprintf("authentication refused (auth status %d); allow AUTH_SYS on the export", r.u32("auth status"))
		default:
			rerr.Detail = fmt.Sprintf("reject status %d", rs)
		}
	default:
		r.fail("reply status %d", stat)
	}
	if r.err != nil {
		return 0, nil, r.err
	}
	return xid, nil, rerr
}
