package member

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenha/xenha/ha"
)

func TestReadJoinToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok, err := ReadJoinToken(write("token", "  s3cret\n"))
	if err != nil || tok != "s3cret" {
		t.Fatalf("ReadJoinToken = %q, %v; want s3cret", tok, err)
	}
	empty := write("empty", " \n")
	if _, err := ReadJoinToken(empty); !errors.Is(err, ErrEmptyToken) || !strings.Contains(err.Error(), empty) {
		t.Errorf("ReadJoinToken of a blank file = %v; want ErrEmptyToken naming %s", err, empty)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := ReadJoinToken(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("ReadJoinToken of a missing file = %v; want fs.ErrNotExist naming %s", err, missing)
	}
}

func TestLogEventsLogsRenewalsAtDebug(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil)) // info and above
	events := make(chan ha.Event, 2)
	events <- ha.Event{Kind: ha.EventApplied, Host: "h1", Message: "renewal"}
	events <- ha.Event{Kind: ha.EventMemberLeft, Host: "h2", Message: "fenced"}
	close(events)
	LogEvents(context.Background(), log, events)
	out := buf.String()
	if strings.Contains(out, "renewal") || !strings.Contains(out, "fenced") || !strings.Contains(out, "host=h2") {
		t.Fatalf("logged at info:\n%s\nwant the fence event and not the renewal", out)
	}
}
