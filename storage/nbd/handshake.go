package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/xenha/xenha/storage"
)

// Handshake constants of the NBD protocol (newstyle negotiation).
const (
	magicNBD      = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt      = 0x49484156454f5054 // "IHAVEOPT"
	magicOldstyle = 0x00420281861253
	magicReply    = 0x0003e889045565a9

	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optAbort = 2
	optList  = 3
	optInfo  = 6
	optGo    = 7

	magicRequest = 0x25609513
	cmdDisc      = 2

	repAck    = 1
	repServer = 2
	repInfo   = 3
	repErr    = 1 << 31

	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3

	// maxReply bounds one option reply: names and descriptions are at most
	// 4 KiB each, so anything near this is a broken or hostile server.
	maxReply = 64 << 10
	// maxReplies bounds the replies to one option (exports in a list).
	maxReplies = 100000
)

// Transmission flags an export advertises.
const (
	FlagHasFlags     = 1 << 0
	FlagReadOnly     = 1 << 1
	FlagSendFlush    = 1 << 2
	FlagSendFUA      = 1 << 3
	FlagRotational   = 1 << 4
	FlagSendTrim     = 1 << 5
	FlagWriteZeroes  = 1 << 6
	FlagCanMultiConn = 1 << 8
)

// Option reply error types a server can answer with.
const (
	RepErrUnsup     = repErr + 1
	RepErrPolicy    = repErr + 2
	RepErrInvalid   = repErr + 3
	RepErrPlatform  = repErr + 4
	RepErrTLSReqd   = repErr + 5
	RepErrUnknown   = repErr + 6
	RepErrShutdown  = repErr + 7
	RepErrBlockSize = repErr + 8
	RepErrTooBig    = repErr + 9
)

// ErrProtocol: the server broke the NBD protocol (or is not an NBD server).
var ErrProtocol = errors.New("nbd: protocol violation")

// ReplyError is an error reply from the server to one option.
type ReplyError struct {
	Option  uint32
	Type    uint32
	Message string // the server's optional human-readable text
}

func (e *ReplyError) Error() string {
	name := map[uint32]string{RepErrUnsup: "unsupported", RepErrPolicy: "refused by policy", RepErrInvalid: "invalid",
		RepErrPlatform: "unsupported on platform", RepErrTLSReqd: "TLS required", RepErrUnknown: "unknown export",
		RepErrShutdown: "server shutting down", RepErrBlockSize: "block size required", RepErrTooBig: "too big"}[e.Type]
	if name == "" {
		name = fmt.Sprintf("error %#x", e.Type)
	}
	if e.Message != "" {
		return fmt.Sprintf("option %d: %s: %s", e.Option, name, e.Message)
	}
	return fmt.Sprintf("option %d: %s", e.Option, name)
}

// Is makes an unknown-export reply match storage.ErrNotFound.
func (e *ReplyError) Is(target error) bool {
	return target == storage.ErrNotFound && e.Type == RepErrUnknown
}

// ExportEntry is one export as NBD_OPT_LIST names it.
type ExportEntry struct {
	Name        string
	Description string
}

// Export is what a server says about one export (NBD_OPT_INFO).
type Export struct {
	Name        string
	Description string
	Size        uint64
	// Flags are the transmission flags (Flag*).
	Flags uint16
	// Block sizes (minimum, preferred, maximum) if the server sent them.
	MinBlock, PreferredBlock, MaxBlock uint32
}

// ReadOnly reports whether the server exports it read-only.
func (e Export) ReadOnly() bool { return e.Flags&FlagReadOnly != 0 }

// ListExports asks the NBD server at addr (host:port) for its exports.
func ListExports(ctx context.Context, addr string) ([]ExportEntry, error) {
	var out []ExportEntry
	err := withSession(ctx, addr, func(s *session) error {
		var err error
		out, err = s.list()
		return err
	})
	return out, err
}

// ExportInfo asks the NBD server at addr (host:port) about one export without
// opening it: it negotiates, sends NBD_OPT_INFO, and aborts. An absent export
// is an error wrapping storage.ErrNotFound; a server that cannot be reached in
// time, storage.ErrUnreachable. Size is 0 from servers that learn it only
// when the export is opened (nbd-server); see OpenInfo.
func ExportInfo(ctx context.Context, addr, name string) (Export, error) {
	var out Export
	err := withSession(ctx, addr, func(s *session) error {
		var err error
		out, err = s.info(name)
		var re *ReplyError
		if errors.As(err, &re) && re.Type == RepErrUnsup {
			// A server without NBD_OPT_INFO still lists its exports: that
			// proves the export exists, without its size.
			return s.infoByList(name, &out)
		}
		return err
	})
	return out, err
}

// OpenInfo is ExportInfo through NBD_OPT_GO: it opens the export and
// disconnects at once (NBD_CMD_DISC). Use it for the size when ExportInfo
// reports 0, as nbd-server does (it learns the size only on open). It is a
// real client session to the server: nbd-server -d, which serves in the
// foreground without forking, exits after it.
func OpenInfo(ctx context.Context, addr, name string) (Export, error) {
	var out Export
	err := withSession(ctx, addr, func(s *session) error {
		var err error
		out, err = s.open(name)
		return err
	})
	return out, err
}

func withSession(ctx context.Context, addr string, f func(*session) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("nbd server %s: %w: %w", addr, storage.ErrUnreachable, ctx.Err())
		}
		return fmt.Errorf("nbd server %s: %w: %v", addr, storage.ErrUnreachable, err)
	}
	defer conn.Close()
	// The handshake is synchronous; make ctx's end unblock it. (Not a
	// deadline copied from ctx: that can fire before ctx reports why.)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	err = converse(ackingConn{conn}, f)
	if err != nil {
		var ne net.Error
		if ctx.Err() != nil {
			return fmt.Errorf("nbd server %s: %w: %w", addr, storage.ErrUnreachable, ctx.Err())
		}
		if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("nbd server %s: %w: %w", addr, storage.ErrUnreachable, err)
		}
		return fmt.Errorf("nbd server %s: %w", addr, err)
	}
	return nil
}

// ackingConn sets quick ACKs before every read (see quickAck).
type ackingConn struct{ net.Conn }

func (c ackingConn) Read(p []byte) (int, error) {
	quickAck(c.Conn)
	return c.Conn.Read(p)
}

// converse runs the handshake on rw, then f, then aborts politely.
func converse(rw io.ReadWriter, f func(*session) error) error {
	s := &session{rw: rw}
	if err := s.greet(); err != nil {
		return err
	}
	err := f(s)
	var re *ReplyError
	if err != nil && !errors.As(err, &re) {
		return err // the stream is broken; nothing polite left to say
	}
	if !s.done {
		s.abort()
	}
	return err
}

type session struct {
	rw   io.ReadWriter
	done bool // in transmission and disconnected: no NBD_OPT_ABORT
}

// abort ends negotiation and waits briefly for the server's ACK (or close), so
// the server sees an orderly end: nbd-server -d exits on a reset connection.
func (s *session) abort() {
	if s.send(optAbort, nil) != nil {
		return
	}
	if c, ok := s.rw.(interface{ SetReadDeadline(time.Time) error }); ok {
		c.SetReadDeadline(time.Now().Add(abortWait))
	}
	readReply(s.rw, optAbort)
}

// abortWait bounds the wait for the ACK to NBD_OPT_ABORT.
const abortWait = time.Second

func (s *session) greet() error {
	var b [18]byte
	if _, err := io.ReadFull(s.rw, b[:]); err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if m := binary.BigEndian.Uint64(b[:8]); m != magicNBD {
		return fmt.Errorf("%w: greeting magic %#x is not NBDMAGIC; is this an NBD server?", ErrProtocol, m)
	}
	switch m := binary.BigEndian.Uint64(b[8:16]); m {
	case magicOpt:
	case magicOldstyle:
		return fmt.Errorf("%w: oldstyle server (no export names); upgrade it or use newstyle", ErrProtocol)
	default:
		return fmt.Errorf("%w: handshake magic %#x", ErrProtocol, m)
	}
	flags := binary.BigEndian.Uint16(b[16:18])
	if flags&flagFixedNewstyle == 0 {
		return fmt.Errorf("%w: server does not offer fixed newstyle negotiation", ErrProtocol)
	}
	cflags := uint32(flagFixedNewstyle)
	if flags&flagNoZeroes != 0 {
		cflags |= flagNoZeroes
	}
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], cflags)
	if _, err := s.rw.Write(c[:]); err != nil {
		return fmt.Errorf("sending client flags: %w", err)
	}
	return nil
}

func (s *session) send(opt uint32, data []byte) error {
	buf := make([]byte, 16+len(data))
	binary.BigEndian.PutUint64(buf[0:], magicOpt)
	binary.BigEndian.PutUint32(buf[8:], opt)
	binary.BigEndian.PutUint32(buf[12:], uint32(len(data)))
	copy(buf[16:], data)
	_, err := s.rw.Write(buf)
	return err
}

// reply is one option reply.
type reply struct {
	opt, typ uint32
	data     []byte
}

// readReply decodes one option reply for opt from r.
func readReply(r io.Reader, opt uint32) (reply, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return reply{}, fmt.Errorf("reading reply to option %d: %w", opt, err)
	}
	if m := binary.BigEndian.Uint64(h[:8]); m != magicReply {
		return reply{}, fmt.Errorf("%w: reply magic %#x", ErrProtocol, m)
	}
	rp := reply{opt: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
	if rp.opt != opt {
		return reply{}, fmt.Errorf("%w: reply for option %d while asking %d", ErrProtocol, rp.opt, opt)
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxReply {
		return reply{}, fmt.Errorf("%w: reply of %d bytes to option %d", ErrProtocol, n, opt)
	}
	rp.data = make([]byte, n)
	if _, err := io.ReadFull(r, rp.data); err != nil {
		return reply{}, fmt.Errorf("reading reply to option %d: %w", opt, err)
	}
	if rp.typ&repErr != 0 {
		return rp, &ReplyError{Option: opt, Type: rp.typ, Message: string(bytes.ToValidUTF8(rp.data, []byte("?")))}
	}
	return rp, nil
}

func (s *session) list() ([]ExportEntry, error) {
	if err := s.send(optList, nil); err != nil {
		return nil, err
	}
	var out []ExportEntry
	for range maxReplies {
		rp, err := readReply(s.rw, optList)
		if err != nil {
			return nil, err
		}
		switch rp.typ {
		case repAck:
			return out, nil
		case repServer:
			e, err := parseServer(rp.data)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		default:
			return nil, fmt.Errorf("%w: reply type %d to NBD_OPT_LIST", ErrProtocol, rp.typ)
		}
	}
	return nil, fmt.Errorf("%w: more than %d exports listed", ErrProtocol, maxReplies)
}

func parseServer(d []byte) (ExportEntry, error) {
	if len(d) < 4 {
		return ExportEntry{}, fmt.Errorf("%w: NBD_REP_SERVER of %d bytes", ErrProtocol, len(d))
	}
	n := binary.BigEndian.Uint32(d)
	if uint64(n) > uint64(len(d)-4) {
		return ExportEntry{}, fmt.Errorf("%w: NBD_REP_SERVER name length %d exceeds reply", ErrProtocol, n)
	}
	return ExportEntry{Name: string(d[4 : 4+n]), Description: string(d[4+n:])}, nil
}

func (s *session) info(name string) (Export, error) { return s.ask(optInfo, name) }

// open sends NBD_OPT_GO; on success the session is in transmission and open
// disconnects it with NBD_CMD_DISC before returning.
func (s *session) open(name string) (Export, error) {
	ex, err := s.ask(optGo, name)
	if err != nil {
		return ex, err
	}
	var req [28]byte
	binary.BigEndian.PutUint32(req[0:], magicRequest)
	binary.BigEndian.PutUint16(req[6:], cmdDisc)
	s.done = true
	if _, err := s.rw.Write(req[:]); err != nil {
		return ex, fmt.Errorf("sending NBD_CMD_DISC: %w", err)
	}
	return ex, nil
}

func (s *session) ask(opt uint32, name string) (Export, error) {
	if len(name) > 4096 {
		return Export{}, fmt.Errorf("export name of %d bytes (at most 4096): %w", len(name), storage.ErrInvalidVolume)
	}
	req := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	req = append(req, name...)
	req = binary.BigEndian.AppendUint16(req, 2)
	req = binary.BigEndian.AppendUint16(req, infoDescription)
	req = binary.BigEndian.AppendUint16(req, infoBlockSize)
	if err := s.send(opt, req); err != nil {
		return Export{}, err
	}
	ex := Export{Name: name}
	gotExport := false
	for range maxReplies {
		rp, err := readReply(s.rw, opt)
		if err != nil {
			return Export{}, err
		}
		switch rp.typ {
		case repAck:
			if !gotExport {
				return Export{}, fmt.Errorf("%w: option %d acknowledged without NBD_INFO_EXPORT", ErrProtocol, opt)
			}
			return ex, nil
		case repInfo:
			if err := parseInfo(rp.data, &ex, &gotExport); err != nil {
				return Export{}, err
			}
		}
		// Other non-error reply types are ignored: the protocol lets
		// servers add them.
	}
	return Export{}, fmt.Errorf("%w: endless replies to option %d", ErrProtocol, opt)
}

// parseInfo decodes one NBD_REP_INFO payload into ex. Unknown info types are
// ignored, as the protocol asks.
func parseInfo(d []byte, ex *Export, gotExport *bool) error {
	if len(d) < 2 {
		return fmt.Errorf("%w: NBD_REP_INFO of %d bytes", ErrProtocol, len(d))
	}
	typ, d := binary.BigEndian.Uint16(d), d[2:]
	switch typ {
	case infoExport:
		if len(d) != 10 {
			return fmt.Errorf("%w: NBD_INFO_EXPORT of %d bytes, want 10", ErrProtocol, len(d))
		}
		ex.Size = binary.BigEndian.Uint64(d)
		ex.Flags = binary.BigEndian.Uint16(d[8:])
		*gotExport = true
	case infoName:
		ex.Name = string(d)
	case infoDescription:
		ex.Description = string(d)
	case infoBlockSize:
		if len(d) != 12 {
			return fmt.Errorf("%w: NBD_INFO_BLOCK_SIZE of %d bytes, want 12", ErrProtocol, len(d))
		}
		ex.MinBlock = binary.BigEndian.Uint32(d)
		ex.PreferredBlock = binary.BigEndian.Uint32(d[4:])
		ex.MaxBlock = binary.BigEndian.Uint32(d[8:])
	}
	return nil
}

func (s *session) infoByList(name string, ex *Export) error {
	list, err := s.list()
	if err != nil {
		return err
	}
	for _, e := range list {
		if e.Name == name {
			*ex = Export{Name: name, Description: e.Description}
			return nil
		}
	}
	return &ReplyError{Option: optInfo, Type: RepErrUnknown, Message: "not in the server's export list"}
}
