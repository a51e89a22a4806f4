package attach

import (
	"errors"
	"strings"
	"testing"

	"github.com/xenha/xenha/storage"
)

type mount struct{ dir string }

func TestRecordLookupForget(t *testing.T) {
	tab := New[mount]("do not write")
	if _, ok := tab.Lookup("vol1"); ok {
		t.Fatal("a fresh table has vol1 attached")
	}
	src := storage.Source{Type: storage.SourceFile, Path: "/run/vol1/disk.img"}
	tab.Record("vol1", Attachment[mount]{Generation: 3, Source: src, Detail: mount{"/run/vol1"}})
	a, ok := tab.Lookup("vol1")
	if !ok || a.Generation != 3 || a.Source.Path != src.Path || a.Detail.dir != "/run/vol1" {
		t.Fatalf("Lookup(vol1) after Record = %+v, %v", a, ok)
	}
	if _, ok := tab.Lookup("vol2"); ok {
		t.Fatal("vol1's attachment shows up under vol2")
	}
	tab.Forget("vol1")
	if a, ok := tab.Lookup("vol1"); ok {
		t.Fatalf("Lookup(vol1) after Forget = %+v, still attached", a)
	}
	tab.Forget("vol1") // forgetting a detached volume is harmless
}

// The floor follows every recorded generation and outlives the attachment:
// an old writer is refused after a detach too.
func TestRecordRaisesFloorForgetKeepsIt(t *testing.T) {
	tab := New[struct{}]("a newer writer owns the volume")
	if err := tab.Check("vol1", 0); err != nil {
		t.Fatalf("fresh table refused generation 0: %v", err)
	}
	tab.Record("vol1", Attachment[struct{}]{Generation: 5})
	tab.Forget("vol1")
	err := tab.Check("vol1", 4)
	if !errors.Is(err, storage.ErrStaleGeneration) {
		t.Fatalf("Check(vol1, 4) after an attach at 5 and a detach = %v, want ErrStaleGeneration", err)
	}
	// The wording is the floor's (tested there); the advice is the table's.
	if !strings.Contains(err.Error(), "attached vol1 with; a newer writer owns the volume") {
		t.Errorf("error %q does not say the volume was attached and what the refusal means", err)
	}
	if err := tab.Check("vol1", 5); err != nil {
		t.Errorf("Check(vol1, 5) with floor 5: %v", err)
	}
	// Re-recording at an older generation does not lower the floor.
	tab.Record("vol1", Attachment[struct{}]{Generation: 2})
	if err := tab.Check("vol1", 4); !errors.Is(err, storage.ErrStaleGeneration) {
		t.Errorf("Check(vol1, 4) after recording 2 over a floor of 5 = %v, want ErrStaleGeneration", err)
	}
	if err := tab.Check("vol2", 0); err != nil {
		t.Errorf("floor of vol1 leaked into vol2: %v", err)
	}
}

// Health reads attachments while an attach of the same volume holds its
// lock (and may hang on a server): Lookup must not wait for that lock. Run
// in one goroutine, a Lookup that took it would deadlock here.
func TestLookupDoesNotWaitForVolumeLock(t *testing.T) {
	tab := New[struct{}]("")
	tab.Record("vol1", Attachment[struct{}]{Generation: 1})
	unlock := tab.Lock("vol1")
	defer unlock()
	if _, ok := tab.Lookup("vol1"); !ok {
		t.Fatal("vol1 not attached")
	}
	tab.Record("vol1", Attachment[struct{}]{Generation: 2})
	if a, _ := tab.Lookup("vol1"); a.Generation != 2 {
		t.Fatalf("generation %d after recording 2", a.Generation)
	}
}
