package ha

import (
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

	mu    sync.Mutex
	err   error
	since time.Time
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

func (s *watchedStore) StoreLog(l *raft.Log) error     { return s.note(s.LogStore.StoreLog(l)) }
func (s *watchedStore) StoreLogs(ls []*raft.Log) error { return s.note(s.LogStore.StoreLogs(ls)) }
func (s *watchedStore) DeleteRange(min, max uint64) error {
	return s.note(s.LogStore.DeleteRange(min, max))
}
func (s *watchedStore) Set(k, v []byte) error { return s.note(s.StableStore.Set(k, v)) }
func (s *watchedStore) SetUint64(k []byte, v uint64) error {
	return s.note(s.StableStore.SetUint64(k, v))
}
