package ha

import (
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestDataDirTornFirstMetaOfLargePages: a raft.db written with pages larger
// than this machine's (a 16 KiB or 64 KiB page kernel) whose first meta page
// was torn at a crash still opens, as bbolt itself would open it from the
// second; the check must not refuse a healthy member's data.
func TestDataDirTornFirstMetaOfLargePages(t *testing.T) {
	for _, ps := range []int{16 << 10, 64 << 10} {
		path := filepath.Join(t.TempDir(), "raft.db")
		db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: ps})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("logs"))
			if err != nil {
				return err
			}
			return b.Put([]byte("k"), []byte("v"))
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, 512), 0); err != nil { // tear meta page 0
			t.Fatal(err)
		}
		f.Close()
		if err := checkBolt(path); err != nil {
			t.Errorf("page size %d, first meta page torn: %v", ps, err)
		}
	}
}
