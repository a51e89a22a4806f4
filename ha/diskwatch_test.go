package ha

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// failingLogs is an in-memory log store whose writes fail while full is set.
type failingLogs struct {
	*raft.InmemStore
	full bool
}

func (f *failingLogs) StoreLogs(ls []*raft.Log) error {
	if f.full {
		return syscall.ENOSPC
	}
	return f.InmemStore.StoreLogs(ls)
}

func (f *failingLogs) StoreLog(l *raft.Log) error { return f.StoreLogs([]*raft.Log{l}) }

func logs(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand})
	}
	return out
}

func termAt(t *testing.T, s raft.LogStore, i uint64) uint64 {
	t.Helper()
	var l raft.Log
	if err := s.GetLog(i, &l); err != nil {
		t.Fatalf("entry %d: %v", i, err)
	}
	return l.Term
}

// Raft truncates a conflicting suffix and then stores the leader's entries.
// If the store fails, the log must still hold what Raft believes it holds
// (the old suffix), and the next attempt must end with the new entries and
// no stale tail. A compaction of the oldest entries happens at once.
func TestWatchedStoreTruncatesOnlyWithItsReplacement(t *testing.T) {
	inner := &failingLogs{InmemStore: raft.NewInmemStore()}
	var events []error
	s := newWatchedStore(inner, inner, func(err error, _ time.Time) { events = append(events, err) })
	if err := s.StoreLogs(logs(1, 30, 1)); err != nil {
		t.Fatal(err)
	}

	// The leader's entries conflict from 25 on; the disk is full.
	inner.full = true
	if err := s.DeleteRange(25, 30); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(logs(25, 27, 2)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("store on a full disk: %v, want ENOSPC", err)
	}
	if last, _ := s.LastIndex(); last != 30 || termAt(t, s, 30) != 1 {
		t.Fatalf("after a failed store the log ends at %d (term %d); want 30, term 1, as Raft believes", last, termAt(t, s, 30))
	}
	if len(events) != 1 || !errors.Is(events[0], syscall.ENOSPC) {
		t.Fatalf("events %v, want one failure", events)
	}

	// Room again: Raft's retry truncates and stores the same way.
	inner.full = false
	if err := s.DeleteRange(25, 30); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(logs(25, 27, 2)); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastIndex(); last != 27 || termAt(t, s, 25) != 2 || termAt(t, s, 27) != 2 {
		t.Fatalf("after the retry the log ends at %d; want 27 with the leader's term", last)
	}
	if len(events) != 2 || events[1] != nil {
		t.Fatalf("events %v, want a failure, then the recovery", events)
	}
	var l raft.Log
	if err := s.GetLog(28, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("stale entry 28: %v, want gone", err)
	}

	// Compaction removes the oldest entries at once.
	if err := s.DeleteRange(1, 10); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 11 {
		t.Fatalf("after compaction the log starts at %d, want 11", first)
	}
	// Entries kept in memory for replication go with them.
	if err := s.GetLog(5, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("compacted entry 5: %v, want gone", err)
	}
}
