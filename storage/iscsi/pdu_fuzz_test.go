package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// loginResponse builds a Login Response PDU as tgtd sends it.
func loginResponse(flags byte, class, detail byte, keys textKeys) []byte {
	p := &pdu{data: encodeText(keys)}
	p.bhs[0] = opLoginResp
	p.bhs[1] = flags
	p.setU32(16, 1)
	p.setU32(24, 1)
	p.bhs[36], p.bhs[37] = class, detail
	return p.encode()
}

func dataIn(itt uint32, status byte, data []byte) []byte {
	p := &pdu{data: data}
	p.bhs[0] = opDataIn
	p.bhs[1] = 0x81 // final, status
	p.bhs[3] = status
	p.setU32(16, itt)
	return p.encode()
}

func TestDecodePDURoundTrip(t *testing.T) {
	in := loginResponse(0x87, 0, 0, textKeys{{"TargetPortalGroupTag", "1"}, {"HeaderDigest", "None"}})
	p, err := decodePDU(in)
	if err != nil {
		t.Fatal(err)
	}
	if p.opcode() != opLoginResp || p.flags() != 0x87 {
		t.Fatalf("opcode 0x%x flags 0x%x", p.opcode(), p.flags())
	}
	kv, err := parseText(p.data)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := kv.get("HeaderDigest"); v != "None" || len(kv) != 2 {
		t.Fatalf("keys = %v", kv)
	}
	if len(in)%4 != 0 {
		t.Fatalf("encoded PDU of %d bytes is not padded", len(in))
	}
	for _, bad := range [][]byte{in[:47], in[:len(in)-1], append(append([]byte{}, in...), 0, 0, 0, 0)} {
		if _, err := decodePDU(bad); !errors.Is(err, ErrMalformedPDU) {
			t.Errorf("decodePDU(%d bytes) = %v, want ErrMalformedPDU", len(bad), err)
		}
	}
	huge := append([]byte{}, in[:48]...)
	huge[5], huge[6], huge[7] = 0xff, 0xff, 0xff
	if _, err := decodePDU(huge); !errors.Is(err, ErrMalformedPDU) {
		t.Errorf("16 MiB data segment: %v, want ErrMalformedPDU", err)
	}
	if _, err := parseText([]byte("novalue\x00")); !errors.Is(err, ErrMalformedPDU) {
		t.Errorf("parseText without '=': %v", err)
	}
}

func FuzzDecodePDU(f *testing.F) {
	f.Add(loginResponse(0x87, 0, 0, textKeys{{"TargetPortalGroupTag", "1"}}))
	f.Add(loginResponse(0x00, 2, 3, nil))
	f.Add(dataIn(2, 0, make([]byte, 32)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePDU(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedPDU) {
				t.Fatalf("error %v does not wrap ErrMalformedPDU", err)
			}
			return
		}
		// What decodes re-encodes to the same bytes, padding aside.
		if out := p.encode(); !bytes.Equal(out[:48], b[:48]) {
			t.Fatalf("header changed in round trip")
		}
		_, _ = parseText(p.data)
	})
}

// FuzzTargetAnswers plays arbitrary bytes as a target's side of a login and
// READ CAPACITY: the initiator must return an error or a result, never
// panic, hang or read past what it was sent.
func FuzzTargetAnswers(f *testing.F) {
	ok := loginResponse(0x81, 0, 0, textKeys{{"AuthMethod", "None"}})
	ok = append(ok, loginResponse(0x87, 0, 0, textKeys{{"HeaderDigest", "None"}})...)
	capData := make([]byte, 32)
	binary.BigEndian.PutUint64(capData, 2047)
	binary.BigEndian.PutUint32(capData[8:], 512)
	f.Add(append(append([]byte{}, ok...), dataIn(2, 0, capData)...))
	f.Add(append(append([]byte{}, ok...), dataIn(2, 0x18, nil)...))
	f.Add(loginResponse(0x00, 2, 3, nil))
	// A real tgtd's side of a probe, recorded by TestRecordedTgtdConversations.
	if rec, err := os.ReadFile(filepath.Join("testdata", "tgtd-probe.bin")); err == nil {
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, answers []byte) {
		client, server := net.Pipe()
		go func() { _, _ = io.Copy(io.Discard, server) }()
		go func() { _, _ = server.Write(answers); server.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c := pipeConn(client)
		defer client.Close()
		if err := c.login(ctx, "Normal", "iqn.2026-11.test:fuzz"); err != nil {
			return
		}
		capa, err := c.readCapacity(ctx, 1)
		if err == nil && capa.BlockSize == 0 && capa.Blocks == 0 {
			t.Logf("zero capacity accepted: %+v", capa)
		}
	})
}

// pipeConn is a connection over one end of a net.Pipe, in the state dial
// leaves it in; the test owns the pipe's lifetime.
func pipeConn(nc net.Conn) *conn {
	c := newConn(nc, "pipe", DefaultInitiatorName)
	c.isid[0] = 0x80
	c.stop = func() {}
	return c
}

// playTarget runs a login and READ CAPACITY against canned target answers.
func playTarget(t *testing.T, answers []byte) (Capacity, error) {
	client, server := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, server) }()
	go func() { _, _ = server.Write(answers); server.Close() }()
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := pipeConn(client)
	if err := c.login(ctx, "Normal", "iqn.2026-11.test:canned"); err != nil {
		return Capacity{}, err
	}
	return c.readCapacity(ctx, 1)
}

func TestCannedTargetAnswers(t *testing.T) {
	ok := loginResponse(0x81, 0, 0, textKeys{{"AuthMethod", "None"}})
	ok = append(ok, loginResponse(0x87, 0, 0, textKeys{{"HeaderDigest", "None"}})...)
	capData := make([]byte, 32)
	binary.BigEndian.PutUint64(capData, 2047)
	binary.BigEndian.PutUint32(capData[8:], 512)

	c, err := playTarget(t, append(append([]byte{}, ok...), dataIn(2, 0, capData)...))
	if err != nil || c.Bytes() != 2048*512 {
		t.Fatalf("capacity %+v, err %v; want 1 MiB", c, err)
	}
	_, err = playTarget(t, append(append([]byte{}, ok...), dataIn(2, statusReservationConflict, nil)...))
	var se *SCSIError
	if !errors.As(err, &se) || se.Status != statusReservationConflict {
		t.Fatalf("err = %v, want a reservation conflict", err)
	}
	_, err = playTarget(t, loginResponse(0, 2, 2, nil))
	var le *LoginError
	if !errors.As(err, &le) || le.Detail != detailForbidden {
		t.Fatalf("err = %v, want a forbidden *LoginError", err)
	}
	_, err = playTarget(t, ok[:60])
	if err == nil {
		t.Fatal("a truncated answer was accepted")
	}
}
