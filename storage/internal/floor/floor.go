// Package floor keeps the generation floor a storage backend enforces on its
// own host: the highest generation it has used each volume with, below which
// a request comes from an old writer and is refused with
// storage.ErrStaleGeneration. It also serializes operations per volume, since
// checking the floor and raising it must happen under the same lock as the
// attach or promotion they guard.
package floor

import (
	"fmt"
	"sync"

	"github.com/xenha/xenha/storage"
)

// Floor is the per-volume generation floor of one backend. It is safe for
// concurrent use. Keys are whatever the backend serializes on (a volume ID,
// a DRBD resource name).
type Floor struct {
	used   string
	advice string

	mu      sync.Mutex
	locks   map[string]*sync.Mutex
	highest map[string]uint64
}

// New returns an empty Floor. used says how the host used a generation, for
// errors ("attached", "promoted"); advice tells the caller what a refusal
// means for it ("a newer writer owns the volume, do not write").
func New(used, advice string) *Floor {
	return &Floor{used: used, advice: advice, locks: map[string]*sync.Mutex{}, highest: map[string]uint64{}}
}

// Lock serializes operations on key without holding up other keys, and
// returns the unlock function.
func (f *Floor) Lock(key string) (unlock func()) {
	f.mu.Lock()
	l := f.locks[key]
	if l == nil {
		l = &sync.Mutex{}
		f.locks[key] = l
	}
	f.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Highest is the highest generation raised for key, 0 if none.
func (f *Floor) Highest(key string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.highest[key]
}

// Check refuses gen for key if it is lower than the highest generation raised
// for key: the error wraps storage.ErrStaleGeneration. Equal or higher is
// allowed; Check does not raise the floor, so a failed operation leaves it
// where it was.
func (f *Floor) Check(key string, gen uint64) error {
	if h := f.Highest(key); gen < h {
		return fmt.Errorf("generation %d is older than generation %d this host %s %s with; %s: %w",
			gen, h, f.used, key, f.advice, storage.ErrStaleGeneration)
	}
	return nil
}

// Raise records that the host used key at gen; the floor never goes down.
func (f *Floor) Raise(key string, gen uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.highest[key] = max(f.highest[key], gen)
}
