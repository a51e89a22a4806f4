package nfs

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformedReply reports bytes from the server that do not decode as the
// RPC reply or XDR structure expected.
var ErrMalformedReply = errors.New("nfs: malformed reply")

// xdrWriter appends XDR (RFC 4506) encodings: big-endian 4-byte units,
// variable-length data prefixed by its length and padded to 4 bytes.
type xdrWriter struct{ b []byte }

func (w *xdrWriter) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *xdrWriter) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }

func (w *xdrWriter) opaque(p []byte) {
	w.u32(uint32(len(p)))
	w.b = append(w.b, p...)
	w.b = append(w.b, make([]byte, pad4(len(p))-len(p))...)
}

func (w *xdrWriter) str(s string) { w.opaque([]byte(s)) }

func pad4(n int) int { return (n + 3) &^ 3 }

// xdrReader decodes XDR from a reply. The first error sticks: later reads
// return zero values, so a decoder checks err once at the end, and no read
// goes past the buffer whatever the server sent.
type xdrReader struct {
	b   []byte
	off int
	err error
}

func (r *xdrReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformedReply}, args...)...)
	}
}

func (r *xdrReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.fail("%s needs %d bytes at offset %d, have %d", what, n, r.off, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *xdrReader) u32(what string) uint32 {
	p := r.take(4, what)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (r *xdrReader) u64(what string) uint64 {
	p := r.take(8, what)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (r *xdrReader) bool(what string) bool {
	switch v := r.u32(what); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail("%s: boolean %d", what, v)
		return false
	}
}

// opaque reads variable-length data of at most max bytes; the limit comes
// from the protocol (a file handle is at most 64 bytes), so a bigger length
// is an error rather than an allocation.
func (r *xdrReader) opaque(max int, what string) []byte {
	n := r.u32(what + " length")
	if r.err != nil {
		return nil
	}
	if int64(n) > int64(max) {
		r.fail("%s of %d bytes exceeds the limit of %d", what, n, max)
		return nil
	}
	p := r.take(pad4(int(n)), what)
	if p == nil {
		return nil
	}
	return append([]byte(nil), p[:n]...)
}

func (r *xdrReader) done(what string) error {
	if r.err == nil && r.off != len(r.b) {
		r.fail("%s: %d trailing bytes", what, len(r.b)-r.off)
	}
	return r.err
}
