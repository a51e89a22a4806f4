package nfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xenha/xenha/storage"
)

// reply builds an accepted RPC reply record (with its record mark) around a
// procedure result, as rpcbind and ganesha send it.
func reply(xid uint32, result []byte) []byte {
	var w xdrWriter
	w.u32(0)
	w.u32(xid)
	w.u32(rpcReply)
	w.u32(msgAccepted)
	w.u32(authNone)
	w.u32(0)
	w.u32(0) // SUCCESS
	w.b = append(w.b, result...)
	w.b[0] = 0x80
	w.b[3] = byte(len(w.b) - 4)
	w.b[2] = byte((len(w.b) - 4) >> 8)
	return w.b
}

func fattr(size uint64) []byte {
	var w xdrWriter
	w.u32(1)
	w.u32(0o644)
	w.u32(1)
	w.u32(0)
	w.u32(0)
	w.u64(size)
	w.u64(0)
	w.u64(0)
	w.u64(7)
	w.u64(42)
	for i := 0; i < 3; i++ {
		w.u64(0)
	}
	return w.b
}

func TestDecodeRecordedReplies(t *testing.T) {
	var mnt xdrWriter
	mnt.u32(0)
	mnt.opaque([]byte("0123456789abcdef0123"))
	mnt.u32(1)
	mnt.u32(authSys)
	rec, err := readRecord(bytes.NewReader(reply(9, mnt.b)))
	if err != nil {
		t.Fatal(err)
	}
	xid, res, err := parseReply(rec, "s", progMount, 3, 1)
	if err != nil || xid != 9 {
		t.Fatalf("xid %d err %v", xid, err)
	}
	fh, err := decodeMountReply(res)
	if err != nil || string(fh) != "0123456789abcdef0123" {
		t.Fatalf("fh %q err %v", fh, err)
	}
	if _, err := decodeMountReply([]byte{0, 0, 0, 2}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("MNT3ERR_NOENT: %v, want ErrNotFound", err)
	}
	var ga xdrWriter
	ga.u32(0)
	ga.b = append(ga.b, fattr(1<<30)...)
	a, err := decodeGetattrReply(ga.b)
	if err != nil || a.Size != 1<<30 || a.Type != TypeRegular || a.FileID != 42 {
		t.Fatalf("attr %+v err %v", a, err)
	}
	if _, err := decodeGetattrReply(ga.b[:50]); !errors.Is(err, ErrMalformedReply) {
		t.Fatalf("truncated fattr3: %v", err)
	}
	// A program rpcbind does not know: accept status PROG_UNAVAIL.
	var pu xdrWriter
	pu.u32(9)
	pu.u32(rpcReply)
	pu.u32(msgAccepted)
	pu.u32(authNone)
	pu.u32(0)
	pu.u32(1)
	var re *RPCError
	if _, _, err := parseReply(pu.b, "s", progNFS, 3, 0); !errors.As(err, &re) {
		t.Fatalf("PROG_UNAVAIL: %v, want *RPCError", err)
	}
	// A record mark announcing more than the decoder accepts.
	if _, err := readRecord(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff})); !errors.Is(err, ErrMalformedReply) {
		t.Fatalf("huge record: %v", err)
	}
}

// FuzzReply feeds arbitrary bytes through every decoder the probe applies
// to a server's answers: none may panic, and failures wrap ErrMalformedReply
// or are typed protocol errors.
func FuzzReply(f *testing.F) {
	var mnt xdrWriter
	mnt.u32(0)
	mnt.opaque([]byte("handle"))
	mnt.u32(0)
	f.Add(reply(1, mnt.b))
	var lk xdrWriter
	lk.u32(0)
	lk.opaque([]byte("child"))
	lk.u32(1)
	lk.b = append(lk.b, fattr(5)...)
	lk.u32(0)
	f.Add(reply(2, lk.b))
	f.Add(reply(3, append([]byte{0, 0, 0, 0}, fattr(9)...)))
	f.Add([]byte{0x80, 0, 0, 4, 0, 0, 0, 1})
	// Real answers of rpcbind and nfs-ganesha, recorded by
	// TestRecordedGaneshaConversation.
	for _, name := range []string{"rpcbind", "mountd", "nfsd"} {
		if b, err := os.ReadFile(filepath.Join("testdata", "ganesha-"+name+".bin")); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := readRecord(bytes.NewReader(b))
		if err != nil {
			return
		}
		_, res, err := parseReply(rec, "fuzz", progNFS, 3, 1)
		var re *RPCError
		if err != nil && !errors.Is(err, ErrMalformedReply) && !errors.As(err, &re) {
			t.Fatalf("unexpected error type: %v", err)
		}
		for _, dec := range []func([]byte) error{
			func(b []byte) error { _, err := decodeMountReply(b); return err },
			func(b []byte) error { _, err := decodeLookupReply(b); return err },
			func(b []byte) error { _, err := decodeGetattrReply(b); return err },
		} {
			err := dec(res)
			var me *MountError
			var se *StatusError
			if err != nil && !errors.Is(err, ErrMalformedReply) && !errors.As(err, &me) && !errors.As(err, &se) {
				t.Fatalf("unexpected error type: %v", err)
			}
		}
	})
}
