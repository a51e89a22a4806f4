package ha

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// watchedStore wraps this member's Raft log and stable store and remembers
// whether writing to them fails. Raft reports a failing write (a full disk,
// an I/O error) only in its log, and keeps going: a leader steps down, a
// follower refuses every append and falls behind for good. The watch turns
// the first failure into an EventStoreFailed and a recovery into an
// EventStoreRecovered, and lets a write that waits for this member to apply
// it say why it never will.
type watchedStore struct {
	raft.LogStore
	raft.StableStore
	changed func(err error, since time.Time) // called outside mu on every change
	// configStored is called after a Raft configuration entry is stored
	// or the log's suffix is cut (the member view refreshes).
	configStored func()

	mu    sync.Mutex
	err   error
	since time.Time

	// cut is a suffix truncation Raft asked for and that waits for the
	// entries that replace it (see DeleteRange); cut.max == 0: none.
	cut struct{ min, max uint64 }

	// recent holds the entries stored last, by index modulo its size, so
	// that a leader sending them to followers reads memory rather than
	// opening a bbolt transaction per entry. Any deletion empties it.
	rmu    sync.RWMutex
	recent [recentLogs]*raft.Log
}

// recentLogs is how many stored entries watchedStore keeps in memory: a few
// batches of MaxAppendEntries.
const recentLogs = 512

// GetLog reads an entry, from memory if it was stored lately.
func (s *watchedStore) GetLog(index uint64, l *raft.Log) error {
	s.rmu.RLock()
	c := s.recent[index%recentLogs]
	s.rmu.RUnlock()
	if c != nil && c.Index == index {
		*l = *c
		return nil
	}
	return s.LogStore.GetLog(index, l)
}

func (s *watchedStore) remember(ls []*raft.Log) {
	s.rmu.Lock()
	for _, l := range ls {
		s.recent[l.Index%recentLogs] = l
	}
	s.rmu.Unlock()
}

func (s *watchedStore) forgetRecent() {
	s.rmu.Lock()
	s.recent = [recentLogs]*raft.Log{}
	s.rmu.Unlock()
}

func newWatchedStore(logs raft.LogStore, stable raft.StableStore, changed func(error, time.Time)) *watchedStore {
	return &watchedStore{LogStore: logs, StableStore: stable, changed: changed}
}

// failing returns the error of the last write if it failed, and since when
// writes have been failing.
func (s *watchedStore) failing() (error, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err, s.since
}

func (s *watchedStore) note(err error) error {
	s.mu.Lock()
	was := s.err
	switch {
	case err != nil && was == nil:
		s.err, s.since = err, time.Now()
	case err != nil:
		s.err = err // the latest cause, same episode
	case was != nil:
		s.err, s.since = nil, time.Time{}
	}
	now, since := s.err, s.since
	s.mu.Unlock()
	if (was == nil) != (now == nil) && s.changed != nil {
		s.changed(now, since)
	}
	return err
}

// DeleteRange removes log entries. A truncation of the log's suffix (a
// follower's entries that conflict with the leader's) is held back until
// StoreLogs has stored the entries that replace it. Raft v1.7.3 truncates,
// then stores, and if the store fails (a full disk) it keeps believing the
// truncated entries exist: it then refuses every later append that
// includes them, and the member never catches up until it restarts
// (TestFullDiskLosesNothing met this). Held back, a failed store leaves the
// log exactly as Raft believes it is. Compaction (a prefix, from the first
// index) is done at once.
func (s *watchedStore) DeleteRange(min, max uint64) error {
	s.forgetRecent()
	first, err := s.LogStore.FirstIndex()
	if err != nil {
		return s.note(err)
	}
	last, err := s.LogStore.LastIndex()
	if err != nil {
		return s.note(err)
	}
	if min > first && max >= last {
		if s.configStored != nil {
			defer s.configStored()
		}
		s.mu.Lock()
		s.cut.min, s.cut.max = min, max
		s.mu.Unlock()
		return nil
	}
	return s.note(s.LogStore.DeleteRange(min, max))
}

func (s *watchedStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries, then carries out a held-back truncation for
// what the entries did not overwrite. Raft stores the replacement starting
// at the truncation's first index, so after a successful store only the
// stale tail beyond the new entries is left to delete.
func (s *watchedStore) StoreLogs(ls []*raft.Log) error {
	if err := checkEntries(ls); err != nil {
		// Never stored, so a restart does not meet it again.
		return fmt.Errorf("ha: refusing to store a log entry Raft could not process: %w", err)
	}
	defer s.noteConfig(ls)
	if err := s.LogStore.StoreLogs(ls); err != nil {
		return s.note(err) // the held-back truncation waits for the retry
	}
	s.remember(ls)
	s.mu.Lock()
	cut := s.cut
	s.mu.Unlock()
	if cut.max != 0 && len(ls) > 0 {
		if last := ls[len(ls)-1].Index; last < cut.max {
			from := max(last+1, cut.min)
			if err := s.LogStore.DeleteRange(from, cut.max); err != nil {
				// Stored, but the stale tail is still there: Raft sees a
				// failed append and sends again; the tail is cut then.
				s.mu.Lock()
				s.cut.min, s.cut.max = from, cut.max
				s.mu.Unlock()
				return s.note(err)
			}
		}
		s.clearCut()
	}
	return s.note(nil)
}

func (s *watchedStore) noteConfig(ls []*raft.Log) {
	if s.configStored == nil {
		return
	}
	for _, l := range ls {
		if l.Type == raft.LogConfiguration {
			s.configStored()
			return
		}
	}
}

func (s *watchedStore) clearCut() {
	s.mu.Lock()
	s.cut.min, s.cut.max = 0, 0
	s.mu.Unlock()
}
func (s *watchedStore) Set(k, v []byte) error { return s.note(s.StableStore.Set(k, v)) }
func (s *watchedStore) SetUint64(k []byte, v uint64) error {
	return s.note(s.StableStore.SetUint64(k, v))
}
