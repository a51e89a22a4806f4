package nbd

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage"
)

func TestNBDServerListAndInfo(t *testing.T) {
	s := startNBDServer(t, nbdExport{name: "vm1", size: 1 << 20}, nbdExport{name: "ro1", size: 2 << 20, readOnly: true})
	ctx := context.Background()
	list, err := ListExports(ctx, s.addr())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range list {
		names = append(names, e.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"ro1", "vm1"}) {
		t.Fatalf("exports %v, want [ro1 vm1]", names)
	}
	ex, err := ExportInfo(ctx, s.addr(), "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if ex.ReadOnly() || ex.Flags&FlagHasFlags == 0 {
		t.Fatalf("vm1: %+v, want writable", ex)
	}
	ex, err = ExportInfo(ctx, s.addr(), "ro1")
	if err != nil {
		t.Fatal(err)
	}
	if !ex.ReadOnly() {
		t.Fatalf("ro1: %+v, want read-only", ex)
	}
	_, err = ExportInfo(ctx, s.addr(), "nope")
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown export: %v, want ErrNotFound", err)
	}
	// The server must still be serving after every probe: they abort cleanly.
	if _, err := ExportInfo(ctx, s.addr(), "vm1"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "nbd-server.log"))
		t.Fatalf("server stopped answering after probes: %v\n%s", err, log)
	}
	// A session that opens the export and disconnects (NBD_CMD_DISC).
	ex, err = OpenInfo(ctx, s.addr(), "ro1")
	if err != nil {
		t.Fatal(err)
	}
	if ex.Size != 2<<20 || !ex.ReadOnly() {
		t.Fatalf("ro1 opened: %+v, want 2 MiB, read-only", ex)
	}
}

func TestQemuNBDListAndInfo(t *testing.T) {
	for _, ro := range []bool{false, true} {
		s := startQemuNBD(t, nbdExport{name: "disk0", size: 3 << 20, readOnly: ro})
		ctx := context.Background()
		list, err := ListExports(ctx, s.addr())
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Name != "disk0" {
			t.Fatalf("exports %+v, want [disk0]", list)
		}
		ex, err := ExportInfo(ctx, s.addr(), "disk0")
		if err != nil {
			t.Fatal(err)
		}
		if ex.Size != 3<<20 || ex.ReadOnly() != ro {
			t.Fatalf("readOnly=%v: info %+v", ro, ex)
		}
		if ex.MinBlock == 0 || ex.MaxBlock < ex.MinBlock {
			t.Errorf("qemu-nbd sends block sizes; got %+v", ex)
		}
		if _, err := ExportInfo(ctx, s.addr(), "disk1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown export: %v, want ErrNotFound", err)
		}
		if _, err := OpenInfo(ctx, s.addr(), "disk1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("opening unknown export: %v, want ErrNotFound", err)
		}
		opened, err := OpenInfo(ctx, s.addr(), "disk0")
		if err != nil || opened.Size != ex.Size || opened.ReadOnly() != ro {
			t.Fatalf("OpenInfo: %+v, %v; want what NBD_OPT_INFO said, %+v", opened, err, ex)
		}
		// --persistent: still serving after a session that opened the export.
		if _, err := ExportInfo(ctx, s.addr(), "disk0"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUnreachable(t *testing.T) {
	ctx := context.Background()
	port := testenv.ClosedPort(t)
	_, err := ExportInfo(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "x")
	if !errors.Is(err, storage.ErrUnreachable) {
		t.Fatalf("closed port: %v, want ErrUnreachable", err)
	}

	// A server that accepts and then says nothing: the caller's deadline ends it.
	silent := testenv.SilentServer(t)
	ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = ExportInfo(ctx, silent, "x")
	if !errors.Is(err, storage.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent server: %v, want ErrUnreachable and DeadlineExceeded", err)
	}
}

func TestNotAnNBDServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
		c.Close()
	}()
	_, err = ExportInfo(context.Background(), l.Addr().String(), "x")
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("ssh banner: %v, want ErrProtocol", err)
	}
}
