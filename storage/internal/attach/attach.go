// Package attach keeps what one storage backend has attached on its own host:
// for each volume, the generation it was attached at, the source handed out
// for it and whatever the backend needs to undo the attach (a mount
// directory, the parameters a device was connected with).
//
// A Table also owns the volumes' generation floor (package floor), because
// the two must move together: recording an attachment raises the floor, and
// forgetting it on detach does not lower it, so an old writer's attach is
// refused with storage.ErrStaleGeneration whatever happened in between.
//
// Locking follows the backends' needs. A backend holds Lock(id) across a
// whole attach or detach, so two operations on one volume never interleave
// while operations on other volumes go on. Lookup takes only a short
// internal lock, so that Health can see what is attached without waiting
// behind an attach that hangs on a host tool or a stalled server.
//
// What counts as attaching "again" (the same generation only, or the same
// parameters at any newer generation) is each backend's own rule; the Table
// only records.
package attach

import (
	"sync"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/internal/floor"
)

// Attachment is one volume as this host has attached it. D is the backend's
// own detail, struct{} when it needs none.
type Attachment[D any] struct {
	// Generation is the generation of the latest attach.
	Generation uint64
	// Source is what that attach returned.
	Source storage.Source
	Detail D
}

// Table is the attached volumes of one backend, keyed by volume ID. It is
// safe for concurrent use.
type Table[D any] struct {
	floor *floor.Floor

	mu   sync.Mutex
	held map[string]Attachment[D]
}

// New returns an empty Table. advice tells an old writer what a refused
// generation means for it ("a newer writer owns the volume, do not write");
// it ends the error of Check.
func New[D any](advice string) *Table[D] {
	return &Table[D]{floor: floor.New("attached", advice), held: map[string]Attachment[D]{}}
}

// Lock serializes attaches and detaches of volume id and returns the unlock
// function.
func (t *Table[D]) Lock(id string) (unlock func()) { return t.floor.Lock(id) }

// Check refuses gen for volume id if the host has attached the volume at a
// newer generation, even one detached since: the error wraps
// storage.ErrStaleGeneration. Call it under Lock, before attaching.
func (t *Table[D]) Check(id string, gen uint64) error { return t.floor.Check(id, gen) }

// Lookup returns the attachment of volume id, if the volume is attached.
func (t *Table[D]) Lookup(id string) (Attachment[D], bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.held[id]
	return a, ok
}

// Record notes that volume id is attached as a says, replacing what was
// recorded before, and raises the floor to a.Generation. Call it under Lock,
// once the attach has succeeded.
func (t *Table[D]) Record(id string, a Attachment[D]) {
	t.mu.Lock()
	t.held[id] = a
	t.mu.Unlock()
	t.floor.Raise(id, a.Generation)
}

// Forget notes that volume id is detached. The floor stays where it is.
// Call it under Lock, once the detach has succeeded.
func (t *Table[D]) Forget(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.held, id)
}
