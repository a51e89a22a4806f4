package storagetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/xenha/xenha/storage"
)

// Kind is the Volume.Kind the fake accepts (an empty Kind is accepted too).
const Kind = "fake"

// Op names an operation, for fault injection and the call log.
type Op string

// Operations of the fake.
const (
	OpAttach  Op = "attach"
	OpDetach  Op = "detach"
	OpHealth  Op = "health"
	OpPromote Op = "promote"
	OpDemote  Op = "demote"
	OpWrite   Op = "write"
)

// Fault is a failure injected into matching calls. Empty Host, Volume or Op
// match anything. A fault first waits Delay (or, with Hang, until the call's
// context ends), then fails the call with Err if set; with neither Hang nor Err
// it only slows the call down.
type Fault struct {
	Host   string
	Volume string
	Op     Op
	Err    error
	Delay  time.Duration
	Hang   bool
	// Times limits how many calls the fault hits; 0 means until removed.
	Times int
}

// Call is one logged operation and its outcome.
type Call struct {
	Host       string
	Op         Op
	Volume     string
	Generation uint64
	Err        error
}

// Option configures a Store.
type Option func(*Store)

// Unenforced makes the store behave like storage that cannot fence an old
// writer (NFS, NBD): an attach from another host succeeds whatever the
// generations, and earlier holders keep writing. Each host still refuses a
// generation lower than the highest it has itself seen, as the nbd backend
// does.
func Unenforced() Option { return func(s *Store) { s.unenforced = true } }

// Store is shared fake storage seen by several simulated hosts. It is safe for
// concurrent use and deterministic: nothing depends on timing except injected
// delays.
type Store struct {
	unenforced bool

	mu     sync.Mutex
	vols   map[string]*volume
	faults []*faultEntry
	calls  []Call
}

type volume struct {
	gen     uint64            // highest generation seen by the storage
	holders map[string]uint64 // host -> generation it attached with and may write at
	seen    map[string]uint64 // host -> highest generation that host has seen
	primary string            // role-based: the host whose replica is primary
}

type faultEntry struct {
	Fault
	left int
}

// NewStore returns an empty store; add volumes with Create.
func NewStore(opts ...Option) *Store {
	s := &Store{vols: map[string]*volume{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Create adds volumes (detached, generation 0). Creating an existing volume
// changes nothing.
func (s *Store) Create(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.vols[id] == nil {
			s.vols[id] = &volume{holders: map[string]uint64{}, seen: map[string]uint64{}}
		}
	}
}

// Remove deletes a volume, as if its export or LUN went away.
func (s *Store) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.vols, id)
}

// Inject adds a fault and returns a function that removes it.
func (s *Store) Inject(f Fault) (remove func()) {
	e := &faultEntry{Fault: f, left: f.Times}
	s.mu.Lock()
	s.faults = append(s.faults, e)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.faults = slices.DeleteFunc(s.faults, func(x *faultEntry) bool { return x == e })
	}
}

// Calls returns the call log in order.
func (s *Store) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Writers returns, sorted, the hosts that can currently write to the volume.
// Safety checks assert it never holds more than one host.
func (s *Store) Writers(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vols[id]
	if v == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(v.holders))
}

// Generation returns the highest generation the storage has seen for the
// volume.
func (s *Store) Generation(id string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.vols[id]; v != nil {
		return v.gen
	}
	return 0
}

// Primary returns the host whose replica is primary (role-based use), or "".
func (s *Store) Primary(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.vols[id]; v != nil {
		return v.primary
	}
	return ""
}

// Write models host writing a block of the volume. It fails with
// storage.ErrStaleGeneration once a newer generation took the volume over from
// host, and with an error for which IsNotAttached is true if host never held
// it (or detached, or was fenced).
func (s *Store) Write(host, id string) error {
	ctx := context.Background()
	return s.do(ctx, host, OpWrite, storage.Volume{ID: id}, func(v *volume) error {
		if _, ok := v.holders[host]; ok {
			return nil
		}
		if v.seen[host] > 0 && v.seen[host] < v.gen {
			return fmt.Errorf("volume %s was taken over at generation %d; this host attached at %d and must stop writing: %w",
				id, v.gen, v.seen[host], storage.ErrStaleGeneration)
		}
		return fmt.Errorf("volume %s is not attached on %s: %w", id, host, errNotAttached)
	})
}

// errNotAttached is wrapped by Write on a host that never attached the volume.
var errNotAttached = errors.New("not attached")

// IsNotAttached reports whether a Write failed because the host does not hold
// the volume (as opposed to having been fenced off by a newer generation).
func IsNotAttached(err error) bool { return errors.Is(err, errNotAttached) }

// Fence models the host being powered off: it loses every attachment and
// primary role, as a fenced host would. It may attach again afterwards, as a
// rebooted host.
func (s *Store) Fence(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.vols {
		delete(v.holders, host)
		if v.primary == host {
			v.primary = ""
		}
	}
}

// do runs one logged operation under the store's lock, after injected faults.
func (s *Store) do(ctx context.Context, host string, op Op, vol storage.Volume, f func(v *volume) error) error {
	err := s.run(ctx, host, op, vol, f)
	s.mu.Lock()
	s.calls = append(s.calls, Call{Host: host, Op: op, Volume: vol.ID, Generation: vol.Generation, Err: err})
	s.mu.Unlock()
	if err != nil {
		return &storage.Error{Volume: vol.ID, Host: host, Op: string(op), Err: err}
	}
	return nil
}

func (s *Store) run(ctx context.Context, host string, op Op, vol storage.Volume, f func(v *volume) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if op != OpWrite && (vol.ID == "" || (vol.Kind != "" && vol.Kind != Kind)) {
		return fmt.Errorf("fake storage needs a volume ID and Kind %q (got ID %q, Kind %q): %w", Kind, vol.ID, vol.Kind, storage.ErrInvalidVolume)
	}
	if err := s.fault(ctx, host, op, vol.ID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vols[vol.ID]
	if v == nil {
		if op == OpDetach || op == OpDemote {
			return nil
		}
		return fmt.Errorf("fake storage has no volume %s: %w", vol.ID, storage.ErrNotFound)
	}
	return f(v)
}

func (s *Store) fault(ctx context.Context, host string, op Op, id string) error {
	s.mu.Lock()
	var hit *Fault
	for _, e := range s.faults {
		if (e.Host == "" || e.Host == host) && (e.Volume == "" || e.Volume == id) && (e.Op == "" || e.Op == op) {
			f := e.Fault
			hit = &f
			if e.Times > 0 {
				if e.left--; e.left == 0 {
					s.faults = slices.DeleteFunc(s.faults, func(x *faultEntry) bool { return x == e })
				}
			}
			break
		}
	}
	s.mu.Unlock()
	if hit == nil {
		return nil
	}
	if hit.Hang {
		<-ctx.Done()
		return fmt.Errorf("injected hang: %w: %w", storage.ErrUnreachable, ctx.Err())
	}
	if hit.Delay > 0 {
		t := time.NewTimer(hit.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("injected delay: %w: %w", storage.ErrUnreachable, ctx.Err())
		}
	}
	return hit.Err
}

// Backend returns host's view of the store, a generation-fenced backend.
func (s *Store) Backend(host string) storage.Backend { return &Backend{store: s, host: host} }

// RoleBackend returns host's view of the store as a role-based backend: Attach
// promotes, Detach demotes, and promotion is refused while another host is
// primary (until that host is fenced or demotes).
func (s *Store) RoleBackend(host string) *RoleBackend {
	return &RoleBackend{Backend{store: s, host: host, role: true}}
}

// Backend is one host's view of a Store.
type Backend struct {
	store *Store
	host  string
	role  bool
}

// RoleBackend is one host's view of a Store as DRBD-like replicated storage.
type RoleBackend struct{ Backend }

var (
	_ storage.Backend  = (*Backend)(nil)
	_ storage.Promoter = (*RoleBackend)(nil)
)

// Host returns the simulated host this backend runs on.
func (b *Backend) Host() string { return b.host }

func (b *Backend) source(vol storage.Volume) storage.Source {
	return storage.Source{Type: storage.SourceBlock, Path: "/dev/disk/by-id/fake-" + vol.ID}
}

// Attach implements storage.Backend.
func (b *Backend) Attach(ctx context.Context, vol storage.Volume) (storage.Source, error) {
	op := OpAttach
	err := b.store.do(ctx, b.host, op, vol, func(v *volume) error { return b.take(v, vol) })
	if err != nil {
		return storage.Source{}, err
	}
	return b.source(vol), nil
}

// take makes b.host a holder of v at vol.Generation if the rules allow.
func (b *Backend) take(v *volume, vol storage.Volume) error {
	g := vol.Generation
	if held, ok := v.holders[b.host]; ok && held == g {
		return nil
	}
	stale := g < v.seen[b.host]
	if !b.store.unenforced {
		stale = g < v.gen
	}
	if stale {
		return fmt.Errorf("generation %d is older than generation %d already attached; this host is an old writer and must not write: %w",
			g, max(v.gen, v.seen[b.host]), storage.ErrStaleGeneration)
	}
	if b.role && v.primary != "" && v.primary != b.host {
		return fmt.Errorf("host %s is still primary for %s; fence it or demote it first: %w", v.primary, vol.ID, storage.ErrInUse)
	}
	if !b.store.unenforced && !b.role {
		for h, hg := range v.holders {
			if h != b.host && hg >= g {
				return fmt.Errorf("host %s holds %s at generation %d; attach with a newer generation after fencing it: %w", h, vol.ID, hg, storage.ErrInUse)
			}
		}
		// A newer generation takes over: the storage now refuses the old holders.
		for h := range v.holders {
			if h != b.host {
				delete(v.holders, h)
			}
		}
	}
	v.holders[b.host] = g
	v.seen[b.host] = max(v.seen[b.host], g)
	v.gen = max(v.gen, g)
	if b.role {
		v.primary = b.host
	}
	return nil
}

// Detach implements storage.Backend. It never disturbs another host that took
// the volume over.
func (b *Backend) Detach(ctx context.Context, vol storage.Volume) error {
	return b.store.do(ctx, b.host, OpDetach, vol, func(v *volume) error {
		b.release(v)
		return nil
	})
}

func (b *Backend) release(v *volume) {
	delete(v.holders, b.host)
	if v.primary == b.host {
		v.primary = ""
	}
}

// Health implements storage.Backend.
func (b *Backend) Health(ctx context.Context, vol storage.Volume) error {
	return b.store.do(ctx, b.host, OpHealth, vol, func(*volume) error { return nil })
}

// Promote implements storage.Promoter.
func (b *RoleBackend) Promote(ctx context.Context, vol storage.Volume) error {
	return b.store.do(ctx, b.host, OpPromote, vol, func(v *volume) error { return b.take(v, vol) })
}

// Demote implements storage.Promoter.
func (b *RoleBackend) Demote(ctx context.Context, vol storage.Volume) error {
	return b.store.do(ctx, b.host, OpDemote, vol, func(v *volume) error {
		b.release(v)
		return nil
	})
}
