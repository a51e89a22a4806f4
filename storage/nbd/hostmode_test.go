package nbd

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/run"
	"github.com/xenha/xenha/storage/storagetest"
)

var update = flag.Bool("update", false, "re-record testdata/*.transcript from the real nbd-client")

// recorded are the transcripts taken from the real nbd-client on a host
// without the nbd module; -update records them again. The success paths
// (connect-ok, check-connected, disconnect-ok) need the module and are
// written by hand from nbd-client 3.24's messages.
var recorded = []struct {
	file string
	args func(t *testing.T, s testServer) []string
}{
	{"check-not-connected", func(*testing.T, testServer) []string { return []string{"-c", "/dev/nbd3"} }},
	{"connect-no-module", func(t *testing.T, s testServer) []string {
		return []string{s.host, strconv.Itoa(s.port), "/dev/nbd3", "-N", "vm1"}
	}},
	{"connect-unknown-export", func(t *testing.T, s testServer) []string {
		return []string{s.host, strconv.Itoa(s.port), "/dev/nbd3", "-N", "vm9"}
	}},
	{"connect-refused", func(t *testing.T, s testServer) []string {
		return []string{s.host, strconv.Itoa(testenv.ClosedPort(t)), "/dev/nbd3", "-N", "vm1"}
	}},
}

func TestRecordNBDClient(t *testing.T) {
	if !*update {
		t.Skip("run with -update to re-record the nbd-client transcripts")
	}
	testenv.NeedBinary(t, "nbd-client")
	if _, err := os.Stat("/sys/module/nbd"); err == nil {
		t.Skip("the nbd module is loaded: recording would connect real devices")
	}
	for _, r := range recorded {
		// A fresh server each, so no recording depends on an earlier one.
		s := startNBDServer(t, nbdExport{name: "vm1", size: 1 << 20})
		rec := &run.Recorder{Runner: &run.Exec{}}
		rec.Run(context.Background(), run.Command("nbd-client", r.args(t, s)...))
		steps := rec.Steps()
		for i := range steps {
			for j, a := range steps[i].Args {
				if a == s.host || (j == 1 && a != "/dev/nbd3") {
					steps[i].Args[j] = "*" // host and port differ per run
				}
			}
		}
		var b bytes.Buffer
		b.WriteString("# recorded from nbd-client 3.24 (no nbd kernel module) by TestRecordNBDClient -update\n")
		run.FormatTranscript(&b, steps)
		if err := os.WriteFile(filepath.Join("testdata", r.file+".transcript"), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func transcript(t *testing.T, names ...string) []run.Step {
	t.Helper()
	var steps []run.Step
	for _, n := range names {
		s, err := run.ReadTranscript(filepath.Join("testdata", n+".transcript"))
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, s...)
	}
	return steps
}

func hostVolume(s testServer, export string) storage.Volume {
	p := s.params(export)
	p["device"] = "/dev/nbd3"
	return storage.Volume{ID: "vm1-disk0", Kind: Kind, Params: p, Generation: 4}
}

func TestHostModeAttachDetach(t *testing.T) {
	s := startQemuNBD(t, nbdExport{name: "vm1", size: 1 << 20})
	rp := run.NewReplay(transcript(t, "check-not-connected", "connect-ok", "check-connected", "disconnect-ok")...)
	b := New(HostMode(), WithRunner(rp), WithHostName("dom0-a"))
	ctx := context.Background()
	vol := hostVolume(s, "vm1")
	src, err := b.Attach(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	if src.Type != storage.SourceBlock || src.Path != "/dev/nbd3" || src.ReadOnly {
		t.Fatalf("source %+v, want writable block /dev/nbd3", src)
	}
	if again, err := b.Attach(ctx, vol); err != nil || !reflect.DeepEqual(again, src) {
		t.Fatalf("second Attach: %+v, %v; want the same source without running nbd-client", again, err)
	}
	if err := b.Detach(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := rp.Done(); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"-c", "/dev/nbd3"},
		{"127.0.0.1", strconv.Itoa(s.port), "/dev/nbd3", "-N", "vm1"},
		{"-c", "/dev/nbd3"},
		{"-d", "/dev/nbd3"},
	}
	calls := rp.Calls()
	for i, c := range calls {
		if c.Name != "nbd-client" || i >= len(want) || !slices.Equal(c.Args, want[i]) {
			t.Fatalf("call %d: %v; want nbd-client %v", i, c, want)
		}
	}
}

func TestHostModeReadOnlyExport(t *testing.T) {
	s := startQemuNBD(t, nbdExport{name: "vm1", size: 1 << 20, readOnly: true})
	steps := transcript(t, "check-not-connected", "connect-ok")
	steps[1].Args[len(steps[1].Args)-1] = "-readonly" // in place of "..."

	rp := run.NewReplay(steps...)
	src, err := New(HostMode(), WithRunner(rp)).Attach(context.Background(), hostVolume(s, "vm1"))
	if err != nil {
		t.Fatal(err)
	}
	if !src.ReadOnly {
		t.Fatalf("source %+v from a read-only export is writable", src)
	}
}

func TestHostModeFailures(t *testing.T) {
	s := startQemuNBD(t, nbdExport{name: "vm1", size: 1 << 20})
	for _, c := range []struct {
		transcripts []string
		want        error
	}{
		{[]string{"check-not-connected", "connect-no-module"}, ErrNoKernelSupport},
		{[]string{"check-not-connected", "connect-unknown-export"}, storage.ErrNotFound},
		{[]string{"check-not-connected", "connect-refused"}, storage.ErrUnreachable},
		{[]string{"check-connected"}, storage.ErrInUse},
	} {
		steps := transcript(t, c.transcripts...)
		for i := range steps {
			if n := len(steps[i].Args); n == 5 {
				// The export vanished between probe and connect: nbd-client's
				// own answer must still be understood.
				steps[i].Args[4] = "*"
			}
		}
		rp := run.NewReplay(steps...)
		b := New(HostMode(), WithRunner(rp), WithHostName("dom0-a"))
		_, err := b.Attach(context.Background(), hostVolume(s, "vm1"))
		var se *storage.Error
		if !errors.Is(err, c.want) || !errors.As(err, &se) || se.Host != "dom0-a" {
			t.Errorf("%v: Attach = %v; want %v in a *storage.Error", c.transcripts, err, c.want)
		}
	}
}

func TestHostModeDetachNotConnected(t *testing.T) {
	rp := run.NewReplay(transcript(t, "check-not-connected")...)
	b := New(HostMode(), WithRunner(rp))
	vol := storage.Volume{ID: "v", Kind: Kind, Params: map[string]string{"server": "127.0.0.1", "export": "x", "device": "/dev/nbd3"}}
	if err := b.Detach(context.Background(), vol); err != nil {
		t.Fatal(err)
	}
	if err := rp.Done(); err != nil {
		t.Fatal(err)
	}
}

func TestHostModeNeedsDevice(t *testing.T) {
	b := New(HostMode(), WithRunner(run.NewReplay()))
	for _, dev := range []string{"", "/dev/sda", "/dev/nbd0; rm -rf /"} {
		vol := storage.Volume{ID: "v", Kind: Kind, Params: map[string]string{"server": "127.0.0.1", "export": "x", "device": dev}}
		if _, err := b.Attach(context.Background(), vol); !errors.Is(err, storage.ErrInvalidVolume) {
			t.Errorf("device %q: %v, want ErrInvalidVolume", dev, err)
		}
	}
}

// nbdClientModel stands in for nbd-client on a host with the nbd module:
// which devices are connected is kept here, and every answer is the output
// of a transcript in testdata (recorded, or in nbd-client's own format).
type nbdClientModel struct {
	t         *testing.T
	mu        sync.Mutex
	connected map[string]bool
}

func (m *nbdClientModel) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var file string
	switch {
	case len(cmd.Args) == 2 && cmd.Args[0] == "-c":
		file = "check-not-connected"
		if m.connected[cmd.Args[1]] {
			file = "check-connected"
		}
	case len(cmd.Args) == 2 && cmd.Args[0] == "-d":
		file = "disconnect-ok"
		delete(m.connected, cmd.Args[1])
	case len(cmd.Args) >= 5:
		file = "connect-ok"
		m.connected[cmd.Args[2]] = true
	}
	steps := transcript(m.t, file)
	for i := range steps {
		steps[i].Args = []string{"..."} // the model decided; only the output matters
	}
	return run.NewReplay(steps...).Run(ctx, cmd)
}

func TestConformanceHostMode(t *testing.T) {
	s := startQemuNBD(t, nbdExport{name: "vm1", size: 1 << 20})
	storagetest.Run(t, func(t *testing.T) storagetest.Subject {
		m := &nbdClientModel{t: t, connected: map[string]bool{}}
		vol := hostVolume(s, "vm1")
		vol.Generation = 0
		missing := hostVolume(s, "vm9")
		missing.ID = "vm9-disk0"
		noDevice := hostVolume(s, "vm1")
		delete(noDevice.Params, "device")
		return storagetest.Subject{
			A:                New(HostMode(), WithRunner(m), WithHostName("dom0-a")),
			Volume:           vol,
			Missing:          missing,
			Invalid:          []storage.Volume{noDevice},
			StaleGenerations: true,
		}
	})
}
