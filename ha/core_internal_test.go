package ha

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/xenha/xenha/storage"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func entry(t testing.TB, index uint64, cmd command, reqID string) *raft.Log {
	t.Helper()
	data, err := encodeCommand(cmd, reqID, t0.Add(time.Duration(index)*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func applyOne(t testing.TB, f *fsm, l *raft.Log) applyResult {
	t.Helper()
	return f.Apply(l).(applyResult)
}

func TestCommandEnvelopeRoundTrip(t *testing.T) {
	cmd := &vmPut{VM: VM{Name: "web1", Spec: VMSpec{MemoryKiB: 1024, VCPUs: 2, MACs: []string{"52:54:00:00:00:01"}}}}
	data, err := encodeCommand(cmd, "req-1", t0)
	if err != nil {
		t.Fatal(err)
	}
	got, env, err := decodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	if env.V != envelopeVersion || env.Kind != "vm.put" || env.RequestID != "req-1" || !env.At.Equal(t0) {
		t.Fatalf("envelope %+v", env)
	}
	a, _ := json.Marshal(cmd)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Fatalf("body changed: %s vs %s", a, b)
	}
}

func TestDecodeRefusesWhatItDoesNotKnow(t *testing.T) {
	// An upgrade helps only with what a newer build wrote; a malformed
	// entry is malformed for every build, and the hint must not say
	// otherwise.
	for name, tt := range map[string]struct{ data, hint string }{
		"unknown kind":  {`{"v":1,"kind":"vm.teleport","req":"x","at":"2026-01-01T00:00:00Z","body":{}}`, "upgrade"},
		"newer version": {`{"v":2,"kind":"vm.put","req":"x","at":"2026-01-01T00:00:00Z","body":{}}`, "upgrade"},
		"bad body":      {`{"v":1,"kind":"vm.put","req":"x","at":"2026-01-01T00:00:00Z","body":{"vm":7}}`, "malformed"},
		"not json":      {`garbage`, "malformed"},
		"no kind":       {`{"v":1}`, "malformed"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := decodeCommand([]byte(tt.data))
			var uerr *UnknownCommandError
			if !errors.As(err, &uerr) || !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("got %v, want an *UnknownCommandError", err)
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("error %q does not say %q", err, tt.hint)
			}
		})
	}
}

func TestFSMAppliesARetriedRequestOnce(t *testing.T) {
	f := newFSM("c1", nil, nil)
	applyOne(t, f, entry(t, 1, &vmPut{VM: VM{Name: "db"}}, "put-1"))
	first := applyOne(t, f, entry(t, 2, &vmDelete{Name: "db"}, "del-1"))
	if first.err != nil {
		t.Fatal(first.err)
	}
	// The same request again (a forwarded write retried after a lost reply)
	// is answered as the first time, not refused as "not found".
	again := applyOne(t, f, entry(t, 3, &vmDelete{Name: "db"}, "del-1"))
	if again.err != nil {
		t.Fatalf("retry of an applied request: %v", again.err)
	}
	// A new request for the same deletion is a new command, and is refused.
	other := applyOne(t, f, entry(t, 4, &vmDelete{Name: "db"}, "del-2"))
	if !errors.Is(other.err, ErrNotFound) {
		t.Fatalf("second deletion: %v, want ErrNotFound", other.err)
	}
	f.read(func(s *State) {
		if s.Index != 4 || s.Requests["del-1"] != 2 {
			t.Fatalf("index %d, requests %v", s.Index, s.Requests)
		}
	})
}

func TestFSMRequestWindowIsBounded(t *testing.T) {
	f := newFSM("c1", nil, nil)
	for i := range maxRequests + 10 {
		applyOne(t, f, entry(t, uint64(i+1), &vmPut{VM: VM{Name: "v"}}, "r"+string(rune('a'+i%26))+strings.Repeat("x", i%7)+itoa(i)))
	}
	f.read(func(s *State) {
		if len(s.Requests) != maxRequests {
			t.Fatalf("%d requests remembered, want %d", len(s.Requests), maxRequests)
		}
	})
	if len(f.results) != maxRequests || len(f.reqOrder) != maxRequests {
		t.Fatalf("results %d, order %d", len(f.results), len(f.reqOrder))
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestFSMRefusalLeavesStateUnchanged(t *testing.T) {
	f := newFSM("c1", nil, nil)
	applyOne(t, f, entry(t, 1, &vmPut{VM: VM{Name: "web"}}, "a"))
	before, _ := f.clone()
	r := applyOne(t, f, entry(t, 2, &vmPut{VM: VM{Name: "web", Spec: VMSpec{Volumes: []string{"missing"}}}}, "b"))
	if !errors.Is(r.err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound for an undefined volume", r.err)
	}
	after, _ := f.clone()
	before.Index, after.Index = 0, 0
	delete(after.Requests, "b")
	a, _ := json.Marshal(before)
	b, _ := json.Marshal(after)
	if !bytes.Equal(a, b) {
		t.Fatalf("refused command changed the state:\n%s\n%s", a, b)
	}
}

func TestFSMHaltsOnUnknownCommand(t *testing.T) {
	var events []Event
	f := newFSM("c1", func(e Event) { events = append(events, e) }, nil)
	applyOne(t, f, entry(t, 1, &vmPut{VM: VM{Name: "web"}}, "a"))
	unknown := &raft.Log{Index: 2, Type: raft.LogCommand,
		Data: []byte(`{"v":1,"kind":"vm.teleport","req":"u","at":"2026-01-01T00:00:00Z","body":{}}`)}
	r := applyOne(t, f, unknown)
	if !errors.Is(r.err, ErrUnknownCommand) {
		t.Fatalf("unknown entry: %v", r.err)
	}
	// Later entries are not applied: the state stays at the last entry
	// understood rather than diverge from members that know the command.
	later := applyOne(t, f, entry(t, 3, &vmPut{VM: VM{Name: "db"}}, "c"))
	if !errors.Is(later.err, ErrHalted) {
		t.Fatalf("entry after the halt: %v, want ErrHalted", later.err)
	}
	if idx, halted := f.index(); idx != 1 || !errors.Is(halted, ErrHalted) {
		t.Fatalf("index %d, halted %v", idx, halted)
	}
	if _, err := f.Snapshot(); !errors.Is(err, ErrHalted) {
		t.Fatalf("snapshot of a halted member: %v, want ErrHalted", err)
	}
	if _, err := f.clone(); !errors.Is(err, ErrHalted) {
		t.Fatalf("read of a halted member: %v, want ErrHalted", err)
	}
	found := false
	for _, e := range events {
		if e.Kind == EventHalted && e.Index == 2 && strings.Contains(e.Message, "vm.teleport") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no halt event in %+v", events)
	}
}

// goldenState is a state touching every part of the schema.
func goldenState() *State {
	s := newState("golden")
	s.Index = 42
	s.Hosts["h1"] = &Host{ID: "h1", Addr: "198.18.0.1:7946", Role: RoleVoter, Capacity: Capacity{MemoryKiB: 1 << 24, VCPUs: 16},
		State: HostOnline, Since: t0, Epoch: 3, Incarnation: "inc1", LeaseSent: t0.Add(time.Second)}
	s.Hosts["w1"] = &Host{ID: "w1", Addr: "198.18.0.3:7946", Role: RoleWitness, State: HostOnline, Since: t0, Epoch: 1}
	s.VMs["web1"] = &VM{Name: "web1", UUID: "3e1f7c2a-0000-4000-8000-000000000001",
		Spec:   VMSpec{DomainXML: "<domain type='xen'><name>web1</name></domain>", MemoryKiB: 1 << 20, VCPUs: 2, MACs: []string{"52:54:00:00:00:01"}, Addrs: []string{"198.18.1.10"}, Volumes: []string{"vol1"}},
		Policy: Policy{Restart: RestartAlways, Priority: 10, Order: 1, AntiAffinity: "web", Preferred: []string{"h1"}, Failback: true, MaxLocalRestarts: 3},
		Host:   "h1", OwnerEpoch: 3, Observed: Observed{Host: "h1", State: 1, Time: t0}}
	s.Volumes["vol1"] = &Volume{Volume: storage.Volume{ID: "vol1", Kind: "iscsi", Generation: 5}, Writer: "h1"}
	s.Fences = []FenceRecord{{Host: "h2", Epoch: 2, Method: "ipmi", Evidence: "chassis power is off", Time: t0,
		Attempts: []FenceAttempt{{Method: "ipmi", Start: t0, Duration: 1500 * time.Millisecond}}}}
	s.Incidents = []*Incident{{ID: "inc-1", Host: "h2", Epoch: 2, Opened: t0, Closed: t0.Add(3 * time.Second),
		Phases: []Phase{{Name: "detect", Start: t0, End: t0.Add(time.Second)}}, VMs: []string{"web1"}, Notes: []string{"fenced by ipmi"}}}
	s.Requests["r1"] = 40
	s.Requests["r2"] = 41
	return s
}

func TestSnapshotGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := encodeSnapshot(&buf, goldenState()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "core_snapshot_v1.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("snapshot encoding changed; if on purpose, bump snapshotVersion or run with -update:\n%s", buf.String())
	}
	// The golden file restores to exactly the state it was made from, and
	// re-encodes byte for byte.
	f := newFSM("other", nil, nil)
	if err := f.Restore(ioNopCloser(bytes.NewReader(want))); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := encodeSnapshot(&again, f.state); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), want) {
		t.Fatalf("restore is not exact:\n%s", again.String())
	}
	// The idempotence window survives a restore, oldest first.
	if len(f.reqOrder) != 2 || f.reqOrder[0] != "r1" {
		t.Fatalf("request order after restore: %v", f.reqOrder)
	}
}

func TestSnapshotRefusesUnknownVersions(t *testing.T) {
	for name, data := range map[string]string{
		"newer":        `{"format":"xenha.state","version":2,"state":{}}`,
		"other format": `{"format":"something","version":1,"state":{}}`,
		"no state":     `{"format":"xenha.state","version":1}`,
		"extra field":  `{"format":"xenha.state","version":1,"state":{},"surprise":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFSM("c", nil, nil)
			applyOne(t, f, entry(t, 1, &vmPut{VM: VM{Name: "keep"}}, "a"))
			if err := f.Restore(ioNopCloser(strings.NewReader(data))); err == nil {
				t.Fatal("restored an unknown snapshot")
			}
			f.read(func(s *State) {
				if s.VMs["keep"] == nil {
					t.Fatal("a refused restore lost the state")
				}
			})
		})
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range []command{&vmPut{VM: VM{Name: "a"}}, &hostJoin{Host: Host{ID: "h1"}}, &volumeDelete{ID: "v"}} {
		data, _ := encodeCommand(cmd, "r", t0)
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"kind":"vm.put","body":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, env, err := decodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("decode error %v is not ErrUnknownCommand", err)
			}
			return
		}
		// Whatever decodes applies without panicking, on a fresh state.
		_, _ = cmd.apply(newState("c"), applyMeta{Index: 1, RequestID: env.RequestID, At: env.At})
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	var buf bytes.Buffer
	_ = encodeSnapshot(&buf, goldenState())
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format":"xenha.state","version":1,"state":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeSnapshot(bytes.NewReader(data))
		if err != nil {
			return
		}
		if s.Hosts == nil || s.VMs == nil || s.Volumes == nil || s.Requests == nil {
			t.Fatal("decoded state with nil maps")
		}
	})
}

func ioNopCloser(r interface{ Read([]byte) (int, error) }) *readCloser { return &readCloser{r} }

type readCloser struct {
	r interface{ Read([]byte) (int, error) }
}

func (rc *readCloser) Read(p []byte) (int, error) { return rc.r.Read(p) }
func (rc *readCloser) Close() error               { return nil }
