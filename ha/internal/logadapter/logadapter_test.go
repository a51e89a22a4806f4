package logadapter

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func records(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestLevelsNamesAndArgs(t *testing.T) {
	var buf bytes.Buffer
	l := Hclog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "raft")
	l.Trace("dropped: below the handler's level")
	l.Debug("dbg", "a", 1)
	l.With("peer", "h2").Named("net").Warn("slow", "ms", 30)
	l.Error("boom")
	rs := records(t, &buf)
	if len(rs) != 3 {
		t.Fatalf("got %d records, want 3 (trace filtered): %v", len(rs), rs)
	}
	if rs[0]["level"] != "DEBUG" || rs[0]["a"] != 1.0 || rs[0]["logger"] != "raft" {
		t.Errorf("debug record %v", rs[0])
	}
	if rs[1]["level"] != "WARN" || rs[1]["peer"] != "h2" || rs[1]["logger"] != "raft.net" || rs[1]["ms"] != 30.0 {
		t.Errorf("warn record %v", rs[1])
	}
	if rs[2]["level"] != "ERROR" {
		t.Errorf("error record %v", rs[2])
	}
	if l.IsTrace() || !l.IsDebug() || l.GetLevel() != hclog.Debug {
		t.Errorf("level queries: trace %v debug %v level %v", l.IsTrace(), l.IsDebug(), l.GetLevel())
	}
}

func TestStandardLoggerKeepsLevels(t *testing.T) {
	var buf bytes.Buffer
	l := Hclog(slog.New(slog.NewJSONHandler(&buf, nil)), "")
	l.StandardLogger(nil).Print("[WARN] raft: heartbeat failed")
	rs := records(t, &buf)
	if len(rs) != 1 || rs[0]["level"] != "WARN" || rs[0]["msg"] != "raft: heartbeat failed" {
		t.Fatalf("records %v", rs)
	}
}

func TestNilLoggerDiscards(t *testing.T) {
	l := Hclog(nil, "x")
	l.Error("nothing happens")
	if l.IsError() {
		t.Error("a discarding logger claims to log errors")
	}
}
