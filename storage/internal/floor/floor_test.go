package floor

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/xenha/xenha/storage"
)

func TestCheckRefusesBelowFloorOnly(t *testing.T) {
	f := New("attached", "do not write")
	if err := f.Check("vol1", 0); err != nil {
		t.Fatalf("fresh floor refused generation 0: %v", err)
	}
	f.Raise("vol1", 5)
	f.Raise("vol1", 3) // never goes down
	if got := f.Highest("vol1"); got != 5 {
		t.Fatalf("Highest = %d after raising to 5 then 3, want 5", got)
	}
	for _, gen := range []uint64{5, 6} {
		if err := f.Check("vol1", gen); err != nil {
			t.Errorf("Check(vol1, %d) with floor 5: %v", gen, err)
		}
	}
	err := f.Check("vol1", 4)
	if !errors.Is(err, storage.ErrStaleGeneration) {
		t.Fatalf("Check(vol1, 4) with floor 5 = %v, want ErrStaleGeneration", err)
	}
	for _, want := range []string{"generation 4", "generation 5", "attached vol1", "do not write"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := f.Check("vol2", 0); err != nil {
		t.Errorf("floor of vol1 leaked into vol2: %v", err)
	}
}

func TestLockSerializesOneKeyOnly(t *testing.T) {
	f := New("attached", "")
	unlock := f.Lock("a")
	// Another key is not held up.
	f.Lock("b")()

	var mu sync.Mutex
	inside := 0
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer f.Lock("a")()
			mu.Lock()
			inside++
			n := inside
			mu.Unlock()
			if n != 1 {
				t.Errorf("%d holders of the lock on a at once", n)
			}
			mu.Lock()
			inside--
			mu.Unlock()
		}()
	}
	mu.Lock()
	if inside != 0 {
		t.Errorf("a goroutine got the lock on a while the test held it")
	}
	mu.Unlock()
	unlock()
	wg.Wait()
}
