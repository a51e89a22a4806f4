package storagetest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/xenha/xenha/storage"
)

// Subject is what Run tests: backends on one or two hosts that share a volume,
// and what they promise. Run calls the constructor once per subtest, so each
// starts from a detached volume.
type Subject struct {
	// A is the backend on the first host. B, on a second host that shares the
	// volume, may be nil for a backend that cannot model two hosts; the
	// two-host checks are then skipped.
	A, B storage.Backend
	// Volume exists and is healthy. Run sets its Generation, starting at
	// Volume.Generation (or 1).
	Volume storage.Volume
	// Missing is well-formed but names nothing on the storage: Health and
	// Attach must fail with storage.ErrNotFound or storage.ErrUnreachable.
	Missing storage.Volume
	// Invalid volumes have malformed or incomplete parameters: Attach and
	// Health must fail with storage.ErrInvalidVolume. Give at least one.
	Invalid []storage.Volume

	// StaleGenerations: a backend refuses to attach with a generation lower
	// than the highest it has seen for the volume (every backend should).
	StaleGenerations bool
	// Exclusive: the storage itself enforces one writer across hosts. B's
	// attach at the generation A holds fails with storage.ErrInUse; a newer
	// generation on B takes over, after which A's attach at its old
	// generation fails with storage.ErrStaleGeneration (and Write from A
	// fails, if Write is set).
	Exclusive bool
	// RoleBased: B's attach fails with storage.ErrInUse while A holds the
	// volume, whatever the generation, until Fence(A) is called.
	RoleBased bool
	// Fence makes the host of b lose the volume as a fenced host would. Needed
	// with RoleBased.
	Fence func(ctx context.Context, b storage.Backend)
	// Write, if set, writes to the attached volume from b's host.
	Write func(ctx context.Context, b storage.Backend, vol storage.Volume) error
}

// WithParam returns a copy of v named id whose parameter key is value, or
// absent if value is empty; v and its Params are left as they were. It
// builds the Invalid volumes of a Subject from a good one, one bad
// parameter each, with the ID naming what is wrong.
func WithParam(v storage.Volume, id, key, value string) storage.Volume {
	params := make(map[string]string, len(v.Params)+1)
	for k, x := range v.Params {
		params[k] = x
	}
	if value == "" {
		delete(params, key)
	} else {
		params[key] = value
	}
	v.ID, v.Params = id, params
	return v
}

// Run checks the storage.Backend contract against fresh subjects from
// newSubject.
func Run(t *testing.T, newSubject func(t *testing.T) Subject) {
	t.Helper()
	checks := []struct {
		name string
		f    func(t *testing.T, s Subject)
	}{
		{"AttachSource", testAttachSource},
		{"AttachIdempotent", testAttachIdempotent},
		{"DetachIdempotent", testDetachIdempotent},
		{"Health", testHealth},
		{"Missing", testMissing},
		{"Invalid", testInvalid},
		{"StaleGeneration", testStale},
		{"OneWriter", testOneWriter},
		{"RoleBased", testRoleBased},
		{"Promoter", testPromoter},
		{"ContextCanceled", testCanceled},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			s := newSubject(t)
			if s.A == nil {
				t.Fatal("Subject.A is nil")
			}
			if s.Volume.Generation == 0 {
				s.Volume.Generation = 1
			}
			c.f(t, s)
		})
	}
}

func gen(v storage.Volume, g uint64) storage.Volume {
	v.Generation = g
	return v
}

func mustAttach(t *testing.T, b storage.Backend, v storage.Volume) storage.Source {
	t.Helper()
	src, err := b.Attach(context.Background(), v)
	if err != nil {
		t.Fatalf("Attach(%s, generation %d): %v", v.ID, v.Generation, err)
	}
	t.Cleanup(func() { b.Detach(context.Background(), v) })
	return src
}

func wantErr(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded; want %v", what, targets)
		return
	}
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	t.Errorf("%s: %v; want an error wrapping one of %v", what, err, targets)
}

func wantStorageError(t *testing.T, what string, err error, vol storage.Volume) {
	t.Helper()
	var se *storage.Error
	if !errors.As(err, &se) {
		t.Errorf("%s: error %v (%T) is not a *storage.Error naming volume, host and step", what, err, err)
		return
	}
	if se.Volume != vol.ID || se.Op == "" || se.Host == "" {
		t.Errorf("%s: *storage.Error{Volume: %q, Host: %q, Op: %q}: want volume %q and a host and step", what, se.Volume, se.Host, se.Op, vol.ID)
	}
}

func checkSource(t *testing.T, src storage.Source) {
	t.Helper()
	switch src.Type {
	case storage.SourceBlock, storage.SourceFile:
		if src.Path == "" {
			t.Errorf("source %+v: %s source without a Path", src, src.Type)
		}
	case storage.SourceNetwork:
		if src.Protocol == "" || src.Name == "" || len(src.Hosts) == 0 {
			t.Errorf("source %+v: network source needs Protocol, Name and Hosts", src)
		}
		for _, h := range src.Hosts {
			if h.Host == "" || h.Port < 0 || h.Port > 65535 {
				t.Errorf("source %+v: bad host %+v", src, h)
			}
		}
	default:
		t.Errorf("source %+v: Type %q is not block, file or network", src, src.Type)
	}
}

func testAttachSource(t *testing.T, s Subject) {
	checkSource(t, mustAttach(t, s.A, s.Volume))
}

func testAttachIdempotent(t *testing.T, s Subject) {
	first := mustAttach(t, s.A, s.Volume)
	second := mustAttach(t, s.A, s.Volume)
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second Attach returned %+v, first %+v; want the same source", second, first)
	}
}

func testDetachIdempotent(t *testing.T, s Subject) {
	ctx := context.Background()
	if err := s.A.Detach(ctx, s.Volume); err != nil {
		t.Errorf("Detach of a never-attached volume: %v; want nil", err)
	}
	mustAttach(t, s.A, s.Volume)
	for i := range 2 {
		if err := s.A.Detach(ctx, s.Volume); err != nil {
			t.Errorf("Detach #%d: %v", i+1, err)
		}
	}
	checkSource(t, mustAttach(t, s.A, s.Volume))
}

func testHealth(t *testing.T, s Subject) {
	if err := s.A.Health(context.Background(), s.Volume); err != nil {
		t.Errorf("Health of a good volume: %v", err)
	}
	mustAttach(t, s.A, s.Volume)
	if err := s.A.Health(context.Background(), s.Volume); err != nil {
		t.Errorf("Health of an attached volume: %v", err)
	}
}

func testMissing(t *testing.T, s Subject) {
	ctx := context.Background()
	err := s.A.Health(ctx, s.Missing)
	wantErr(t, "Health(missing)", err, storage.ErrNotFound, storage.ErrUnreachable)
	wantStorageError(t, "Health(missing)", err, s.Missing)
	_, err = s.A.Attach(ctx, s.Missing)
	wantErr(t, "Attach(missing)", err, storage.ErrNotFound, storage.ErrUnreachable)
	wantStorageError(t, "Attach(missing)", err, s.Missing)
}

func testInvalid(t *testing.T, s Subject) {
	if len(s.Invalid) == 0 {
		t.Fatal("Subject.Invalid is empty; give at least one malformed volume")
	}
	ctx := context.Background()
	for _, v := range s.Invalid {
		_, err := s.A.Attach(ctx, v)
		wantErr(t, "Attach(invalid "+v.ID+")", err, storage.ErrInvalidVolume)
		wantErr(t, "Health(invalid "+v.ID+")", s.A.Health(ctx, v), storage.ErrInvalidVolume)
	}
}

func testStale(t *testing.T, s Subject) {
	if !s.StaleGenerations {
		t.Skip("subject does not refuse stale generations")
	}
	ctx := context.Background()
	g := s.Volume.Generation
	mustAttach(t, s.A, gen(s.Volume, g+1))
	if err := s.A.Detach(ctx, gen(s.Volume, g+1)); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	_, err := s.A.Attach(ctx, gen(s.Volume, g))
	wantErr(t, "Attach with an older generation on the same host", err, storage.ErrStaleGeneration)
	if err == nil {
		s.A.Detach(ctx, gen(s.Volume, g))
	}
	checkSource(t, mustAttach(t, s.A, gen(s.Volume, g+2)))
}

func testOneWriter(t *testing.T, s Subject) {
	if s.B == nil || !s.Exclusive {
		t.Skip("subject does not enforce one writer across two hosts")
	}
	ctx := context.Background()
	g := s.Volume.Generation
	mustAttach(t, s.A, gen(s.Volume, g))
	_, err := s.B.Attach(ctx, gen(s.Volume, g))
	wantErr(t, "Attach on B at the generation A holds", err, storage.ErrInUse)
	mustAttach(t, s.B, gen(s.Volume, g+1))
	if s.Write != nil {
		wantErr(t, "Write from A after B took over", s.Write(ctx, s.A, gen(s.Volume, g)), storage.ErrStaleGeneration)
		if err := s.Write(ctx, s.B, gen(s.Volume, g+1)); err != nil {
			t.Errorf("Write from B, the new holder: %v", err)
		}
	}
	_, err = s.A.Attach(ctx, gen(s.Volume, g))
	wantErr(t, "Attach on A at its old generation", err, storage.ErrStaleGeneration)
	if err := s.A.Detach(ctx, gen(s.Volume, g)); err != nil {
		t.Errorf("Detach on the old holder: %v", err)
	}
	if s.Write != nil {
		if err := s.Write(ctx, s.B, gen(s.Volume, g+1)); err != nil {
			t.Errorf("Write from B after A detached: %v; the old holder's detach must not disturb the new one", err)
		}
	}
}

func testRoleBased(t *testing.T, s Subject) {
	if s.B == nil || !s.RoleBased {
		t.Skip("subject is not role-based on two hosts")
	}
	if s.Fence == nil {
		t.Fatal("RoleBased subject without Fence")
	}
	ctx := context.Background()
	g := s.Volume.Generation
	mustAttach(t, s.A, gen(s.Volume, g))
	_, err := s.B.Attach(ctx, gen(s.Volume, g+1))
	wantErr(t, "Attach on B while A is primary", err, storage.ErrInUse)
	s.Fence(ctx, s.A)
	checkSource(t, mustAttach(t, s.B, gen(s.Volume, g+1)))
	_, err = s.A.Attach(ctx, gen(s.Volume, g))
	wantErr(t, "Attach on fenced A at its old generation", err, storage.ErrStaleGeneration, storage.ErrInUse)
}

func testPromoter(t *testing.T, s Subject) {
	p, ok := s.A.(storage.Promoter)
	if !ok {
		t.Skip("backend is not a storage.Promoter")
	}
	ctx := context.Background()
	for i := range 2 {
		if err := p.Promote(ctx, s.Volume); err != nil {
			t.Fatalf("Promote #%d: %v", i+1, err)
		}
	}
	for i := range 2 {
		if err := p.Demote(ctx, s.Volume); err != nil {
			t.Fatalf("Demote #%d: %v", i+1, err)
		}
	}
}

func testCanceled(t *testing.T, s Subject) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.A.Attach(ctx, s.Volume)
	wantErr(t, "Attach with a canceled context", err, context.Canceled)
	if err == nil {
		s.A.Detach(context.Background(), s.Volume)
	}
	wantErr(t, "Health with a canceled context", s.A.Health(ctx, s.Volume), context.Canceled)
}
