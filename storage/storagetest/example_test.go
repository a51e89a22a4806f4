package storagetest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/storagetest"
)

// A volume moves from a dead host to a survivor: the survivor attaches with a
// newer generation, and the old host's writes are refused from then on.
func ExampleStore() {
	ctx := context.Background()
	st := storagetest.NewStore()
	st.Create("vm1-disk0")

	vol := storage.Volume{ID: "vm1-disk0", Kind: storagetest.Kind, Generation: 7}
	src, _ := st.Backend("dom0-a").Attach(ctx, vol)
	fmt.Println("dom0-a attached", src)

	vol.Generation = 8 // bumped in the replicated log after dom0-a was fenced
	if _, err := st.Backend("dom0-b").Attach(ctx, vol); err != nil {
		fmt.Println(err)
	}
	fmt.Println("writers:", st.Writers("vm1-disk0"))
	err := st.Write("dom0-a", "vm1-disk0")
	fmt.Println("dom0-a stale:", errors.Is(err, storage.ErrStaleGeneration))
	// Output:
	// dom0-a attached block:/dev/disk/by-id/fake-vm1-disk0
	// writers: [dom0-b]
	// dom0-a stale: true
}
