package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
)

func TestExecCapturesOutputAndStatus(t *testing.T) {
	testenv.NeedBinary(t, "sh")
	var e Exec
	res, err := e.Run(context.Background(), Command("sh", "-c", "echo out; echo err >&2; exit 3"))
	var xe *ExitError
	if !errors.As(err, &xe) || xe.ExitCode != 3 || !strings.Contains(xe.Error(), "err") {
		t.Fatalf("err = %v, want *ExitError status 3 quoting stderr", err)
	}
	if string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.ExitCode != 3 {
		t.Fatalf("res = %+v", res)
	}
	res, err = e.Run(context.Background(), Cmd{Name: "cat", Stdin: []byte("fed")})
	if err != nil || string(res.Stdout) != "fed" {
		t.Fatalf("stdin: %q, %v", res.Stdout, err)
	}
}

func TestExecNotInstalled(t *testing.T) {
	var e Exec
	_, err := e.Run(context.Background(), Command("xenha-no-such-program"))
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
}

func TestExecContextEnds(t *testing.T) {
	testenv.NeedBinary(t, "sleep")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var e Exec
	_, err := e.Run(ctx, Command("sleep", "30"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

const sampleTranscript = `# nbd-client probing a device
$ nbd-client -c /dev/nbd0
1> 4242
exit 0

$ nbd-client "127.0.0.1" * -N vm1 ...
2> Negotiation: ..Error: Server closed connection
1>
exit 1
`

func TestTranscriptRoundTrip(t *testing.T) {
	steps, err := ParseTranscript(strings.NewReader(sampleTranscript))
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{
		{Name: "nbd-client", Args: []string{"-c", "/dev/nbd0"}, Stdout: "4242\n"},
		{Name: "nbd-client", Args: []string{"127.0.0.1", "*", "-N", "vm1", "..."}, Stdout: "\n",
			Stderr: "Negotiation: ..Error: Server closed connection\n", ExitCode: 1},
	}
	if !reflect.DeepEqual(steps, want) {
		t.Fatalf("parsed %#v\nwant %#v", steps, want)
	}
	var b bytes.Buffer
	if err := FormatTranscript(&b, steps); err != nil {
		t.Fatal(err)
	}
	again, err := ParseTranscript(&b)
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip: %#v, %v\n%s", again, err, b.String())
	}
}

func TestTranscriptRejectsGarbage(t *testing.T) {
	for _, in := range []string{"1> before a command", "$ x\nexit nine", "$ x\nwhat is this", "$ \"unterminated"} {
		if _, err := ParseTranscript(strings.NewReader(in)); err == nil {
			t.Errorf("ParseTranscript(%q) accepted it", in)
		}
	}
}

func TestReplayOrderedAndWildcards(t *testing.T) {
	steps, _ := ParseTranscript(strings.NewReader(sampleTranscript))
	r := NewReplay(steps...)
	ctx := context.Background()
	if _, err := r.Run(ctx, Command("nbd-client", "127.0.0.1", "10809", "-N", "vm1")); !errors.Is(err, ErrUnexpected) {
		t.Fatalf("out of order: %v, want ErrUnexpected", err)
	}
	res, err := r.Run(ctx, Command("nbd-client", "-c", "/dev/nbd0"))
	if err != nil || string(res.Stdout) != "4242\n" {
		t.Fatalf("step 1: %q %v", res.Stdout, err)
	}
	if err := r.Done(); err == nil {
		t.Fatal("Done with a step left returned nil")
	}
	_, err = r.Run(ctx, Command("nbd-client", "127.0.0.1", "10809", "-N", "vm1", "-b", "512"))
	var xe *ExitError
	if !errors.As(err, &xe) || xe.ExitCode != 1 {
		t.Fatalf("step 2: %v, want exit 1", err)
	}
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Calls()); n != 3 {
		t.Fatalf("%d calls logged, want 3", n)
	}
}

func TestReplayRepeat(t *testing.T) {
	r := &Replay{Repeat: true, steps: []Step{{Name: "drbdadm", Args: []string{"status", "*"}, Stdout: "ok\n"}}}
	for range 3 {
		if res, err := r.Run(context.Background(), Command("drbdadm", "status", "r0")); err != nil || string(res.Stdout) != "ok\n" {
			t.Fatalf("%q %v", res.Stdout, err)
		}
	}
	if _, err := r.Run(context.Background(), Command("drbdadm", "status")); !errors.Is(err, ErrUnexpected) {
		t.Fatalf("short argv matched: %v", err)
	}
}

func TestRecorderKeepsRealOutput(t *testing.T) {
	testenv.NeedBinary(t, "sh")
	rec := &Recorder{Runner: &Exec{}}
	rec.Run(context.Background(), Command("sh", "-c", "echo hi; exit 2"))
	var b bytes.Buffer
	FormatTranscript(&b, rec.Steps())
	if want := "$ sh -c \"echo hi; exit 2\"\n1> hi\nexit 2\n"; b.String() != want {
		t.Fatalf("recorded\n%s\nwant\n%s", b.String(), want)
	}
}

func FuzzParseTranscript(f *testing.F) {
	f.Add(sampleTranscript)
	f.Add("$ a \"b c\" d\n1> x\n2> y\nexit 7\n")
	f.Fuzz(func(t *testing.T, in string) {
		steps, err := ParseTranscript(strings.NewReader(in))
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := FormatTranscript(&b, steps); err != nil {
			t.Fatal(err)
		}
		again, err := ParseTranscript(&b)
		if err != nil {
			t.Fatalf("formatted transcript does not parse: %v\n%s", err, b.String())
		}
		if len(again) != len(steps) {
			t.Fatalf("%d steps became %d", len(steps), len(again))
		}
	})
}

func TestReadTranscriptNamesFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.txt")
	if err := os.WriteFile(good, []byte(sampleTranscript), 0o644); err != nil {
		t.Fatal(err)
	}
	steps, err := ReadTranscript(good)
	if err != nil || len(steps) != 2 {
		t.Fatalf("ReadTranscript(%s) = %d steps, %v; want 2", good, len(steps), err)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("1> output before any command\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTranscript(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("ReadTranscript(%s) = %v; want an error naming the file", bad, err)
	}
	if _, err := ReadTranscript(filepath.Join(dir, "absent.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadTranscript(absent) = %v; want os.ErrNotExist", err)
	}
}
