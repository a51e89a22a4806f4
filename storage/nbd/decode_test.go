package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/xenha/xenha/storage"
)

// serverBytes builds what a server sends, for the decoder tests and the fuzz
// seed corpus.
type serverBytes struct{ bytes.Buffer }

func (b *serverBytes) greeting(flags uint16) *serverBytes {
	binary.Write(b, binary.BigEndian, uint64(magicNBD))
	binary.Write(b, binary.BigEndian, uint64(magicOpt))
	binary.Write(b, binary.BigEndian, flags)
	return b
}

func (b *serverBytes) reply(opt, typ uint32, data []byte) *serverBytes {
	binary.Write(b, binary.BigEndian, uint64(magicReply))
	binary.Write(b, binary.BigEndian, opt)
	binary.Write(b, binary.BigEndian, typ)
	binary.Write(b, binary.BigEndian, uint32(len(data)))
	b.Write(data)
	return b
}

func (b *serverBytes) server(name, desc string) *serverBytes {
	d := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	return b.reply(optList, repServer, append(append(d, name...), desc...))
}

func (b *serverBytes) infoExport(opt uint32, size uint64, flags uint16) *serverBytes {
	d := binary.BigEndian.AppendUint16(nil, infoExport)
	d = binary.BigEndian.AppendUint64(d, size)
	return b.reply(opt, repInfo, binary.BigEndian.AppendUint16(d, flags))
}

func (b *serverBytes) infoBlock(opt uint32, lo, pref, hi uint32) *serverBytes {
	d := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	d = binary.BigEndian.AppendUint32(d, lo)
	d = binary.BigEndian.AppendUint32(d, pref)
	return b.reply(opt, repInfo, binary.BigEndian.AppendUint32(d, hi))
}

func (b *serverBytes) infoText(opt uint32, typ uint16, s string) *serverBytes {
	return b.reply(opt, repInfo, append(binary.BigEndian.AppendUint16(nil, typ), s...))
}

type pipe struct {
	io.Reader
	sent bytes.Buffer
}

func (p *pipe) Write(b []byte) (int, error) { return p.sent.Write(b) }

func converseBytes(in []byte, f func(*session) error) (*pipe, error) {
	p := &pipe{Reader: bytes.NewReader(in)}
	return p, converse(p, f)
}

func TestDecodeInfo(t *testing.T) {
	var b serverBytes
	b.greeting(flagFixedNewstyle|flagNoZeroes).
		infoText(optInfo, infoDescription, "web server root disk").
		infoExport(optInfo, 10<<30, FlagHasFlags|FlagReadOnly|FlagSendFlush).
		infoBlock(optInfo, 1, 4096, 32<<20).
		infoText(optInfo, 77, "an info type from the future").
		reply(optInfo, repAck, nil).
		reply(optAbort, repAck, nil)
	var ex Export
	p, err := converseBytes(b.Bytes(), func(s *session) (err error) { ex, err = s.info("vm1"); return })
	if err != nil {
		t.Fatal(err)
	}
	want := Export{Name: "vm1", Description: "web server root disk", Size: 10 << 30, Flags: FlagHasFlags | FlagReadOnly | FlagSendFlush,
		MinBlock: 1, PreferredBlock: 4096, MaxBlock: 32 << 20}
	if ex != want || !ex.ReadOnly() {
		t.Fatalf("got %+v\nwant %+v", ex, want)
	}
	// What the client sent: flags, then NBD_OPT_INFO for "vm1" asking for
	// description and block size, then NBD_OPT_ABORT.
	sent := p.sent.Bytes()
	if cf := binary.BigEndian.Uint32(sent); cf != flagFixedNewstyle|flagNoZeroes {
		t.Errorf("client flags %#x", cf)
	}
	opt := sent[4:]
	if binary.BigEndian.Uint64(opt) != magicOpt || binary.BigEndian.Uint32(opt[8:]) != optInfo ||
		binary.BigEndian.Uint32(opt[12:]) != 4+3+2+4 || string(opt[20:23]) != "vm1" {
		t.Errorf("NBD_OPT_INFO request % x", opt[:min(len(opt), 30)])
	}
	tail := opt[16+13:]
	if binary.BigEndian.Uint32(tail[8:]) != optAbort {
		t.Errorf("did not end with NBD_OPT_ABORT: % x", tail)
	}
}

func TestDecodeUnsupportedInfoFallsBackToList(t *testing.T) {
	var b serverBytes
	b.greeting(flagFixedNewstyle).
		reply(optInfo, RepErrUnsup, []byte("no INFO here")).
		server("other", "").server("vm1", "the one").reply(optList, repAck, nil)
	var ex Export
	_, err := converseBytes(b.Bytes(), func(s *session) error {
		var err error
		ex, err = s.info("vm1")
		var re *ReplyError
		if errors.As(err, &re) && re.Type == RepErrUnsup {
			return s.infoByList("vm1", &ex)
		}
		return err
	})
	if err != nil || ex.Name != "vm1" || ex.Description != "the one" {
		t.Fatalf("%+v, %v", ex, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	huge := (&serverBytes{}).greeting(flagFixedNewstyle)
	binary.Write(huge, binary.BigEndian, uint64(magicReply))
	binary.Write(huge, binary.BigEndian, []uint32{optList, repServer, 1 << 30})
	for name, c := range map[string]struct {
		in   []byte
		want error
	}{
		"not fixed newstyle":      {(&serverBytes{}).greeting(0).Bytes(), ErrProtocol},
		"oldstyle":                {append(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, magicNBD), magicOldstyle), make([]byte, 12)...), ErrProtocol},
		"huge reply":              {huge.Bytes(), ErrProtocol},
		"reply to another option": {(&serverBytes{}).greeting(1).reply(optInfo, repAck, nil).Bytes(), ErrProtocol},
		"name longer than reply":  {(&serverBytes{}).greeting(1).reply(optList, repServer, []byte{0, 0, 0, 9, 'a'}).Bytes(), ErrProtocol},
		"unknown export":          {(&serverBytes{}).greeting(1).reply(optList, RepErrUnknown, []byte("gone")).Bytes(), storage.ErrNotFound},
		"truncated":               {(&serverBytes{}).greeting(1).server("a", "").bytesCut(30), io.ErrUnexpectedEOF},
	} {
		_, err := converseBytes(c.in, func(s *session) error { _, err := s.list(); return err })
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func (b *serverBytes) bytesCut(n int) []byte { return b.Bytes()[:n] }

func FuzzServerReplies(f *testing.F) {
	f.Add((&serverBytes{}).greeting(3).server("vm1", "d").server("ro1", "").reply(optList, repAck, nil).
		infoExport(optInfo, 1<<20, 3).infoBlock(optInfo, 1, 4096, 1<<25).reply(optInfo, repAck, nil).Bytes())
	f.Add((&serverBytes{}).greeting(1).reply(optList, repAck, nil).reply(optInfo, RepErrUnknown, []byte("x")).Bytes())
	f.Add((&serverBytes{}).greeting(1).reply(optList, repAck, nil).infoExport(optInfo, 0, 0).reply(optInfo, repAck, nil).Bytes())
	f.Add([]byte("NBDMAGIC"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var list []ExportEntry
		var ex Export
		_, err := converseBytes(in, func(s *session) error {
			var err error
			if list, err = s.list(); err != nil {
				return err
			}
			ex, err = s.info("vm1")
			return err
		})
		if err != nil {
			return
		}
		if len(list) > len(in)/24 {
			t.Fatalf("%d exports decoded from %d bytes", len(list), len(in))
		}
		_ = ex
	})
}
