package ha

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// A member's data directory: raft.db (the Raft log and stable store,
// bbolt), snapshots/ (Raft's file snapshots) and LOCK. One process at a
// time: a second one gets an error naming the holder instead of waiting for
// bbolt's lock forever. The directory is 0700 and what xenha writes in it
// 0600, because the state names every VM, volume and fence record.

const lockFile = "LOCK"

// dirLock is an exclusive flock on DataDir/LOCK, which holds the holder's PID.
type dirLock struct{ f *os.File }

func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf("process %d", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by %s (it holds %s): stop that process, or give this member another DataDir", dir, holder, path)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// Close releases the lock (the PID stays: the next holder overwrites it).
func (l *dirLock) Close() error { return l.f.Close() }

// boltOpenTimeout bounds the wait for bbolt's own file lock. The directory
// lock is taken first, so it only matters when something outside xenha
// holds raft.db.
const boltOpenTimeout = 2 * time.Second

// openBolt opens raft.db. bbolt panics on some corrupt files (a truncated
// one, say): that becomes an error saying what to do.
func openBolt(dir string) (store *raftboltdb.BoltStore, err error) {
	path := filepath.Join(dir, "raft.db")
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				file.Close() // and with it bbolt's lock, which the panic left held
			}
			store, err = nil, fmt.Errorf("%s is corrupt (%v): restore it from a backup, or remove this member from the cluster and join it again with an empty DataDir under a new ID", path, r)
		}
	}()
	if err := checkBolt(path); err != nil {
		return nil, err
	}
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	store, err = raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: boltOptions(openFile)})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: another process holds its lock (waited %v): stop it, or give this member another DataDir", path, boltOpenTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w: restore it from a backup, or remove this member from the cluster and join it again with an empty DataDir under a new ID", path, err)
	}
	_ = os.Chmod(path, 0o600)
	return store, nil
}

// boltOptions are raft.db's: the freelist is not written with every commit
// (bbolt rebuilds it when the file is opened), so each append writes and
// syncs its own pages and the meta page only, which is what bounds commit
// throughput. The check opens the file with the same options, or bbolt
// would write a freelist on the way.
func boltOptions(openFile func(string, int, os.FileMode) (*os.File, error)) *bolt.Options {
	return &bolt.Options{Timeout: boltOpenTimeout, OpenFile: openFile, NoFreelistSync: true, FreelistType: bolt.FreelistMapType}
}

// checkBolt reads an existing raft.db through once, so that a damaged file
// is refused at start instead of panicking in the middle of Raft's work.
// bbolt panics on a bad page, and a file shorter than its pages faults on
// the mapped memory: both are caught here, in this goroutine (bbolt's own
// Tx.Check runs in a goroutine of its own, where a panic is fatal).
func checkBolt(path string) (err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Size() == 0) {
		return nil // bbolt makes a new one (checkStable then asks whether it should have)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	corrupt := func(why any) error {
		return fmt.Errorf("%s is corrupt (%v): restore it from a backup, or remove this member from the cluster and join it again with an empty DataDir under a new ID", path, why)
	}
	if err := checkBoltPages(path, fi.Size()); err != nil {
		return corrupt(err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			// A panic inside Open leaves bbolt's file, and its lock, open:
			// close it, or the next open would blame another process.
			if file != nil {
				file.Close()
			}
			err = corrupt(r)
		}
	}()
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	db, err := bolt.Open(path, 0o600, boltOptions(openFile))
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("open %s: another process holds its lock (waited %v): stop it, or give this member another DataDir", path, boltOpenTimeout)
	}
	if err != nil {
		return corrupt(err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return corrupt(fmt.Sprintf("its pages end at %d bytes, the file at %d: it was truncated", tx.Size(), fi.Size()))
		}
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			return walkBucket(b)
		})
	})
}

// walkBucket touches every key and value under b.
func walkBucket(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if sub := b.Bucket(k); sub != nil {
				return walkBucket(sub)
			}
			return nil
		}
		_ = v[len(v)/2:] // read the page it lives on
		return nil
	})
}

// Raft's stable store keys (raft's own names).
var (
	keyCurrentTerm = []byte("CurrentTerm")
)

// checkStable refuses a stable store that lost its term while a log or a
// snapshot says the member took part in the cluster: Raft would start at
// term 0 with no vote, and could vote twice in a term it already voted in.
// It happens when raft.db is deleted, truncated or replaced by an older or
// empty copy beside the snapshots.
func checkStable(dir string, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) error {
	term, err := stable.GetUint64(keyCurrentTerm)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("read the current term from %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	if term > 0 {
		return nil
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("read the Raft log in %s: %w", dir, err)
	}
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots in %s: %w", dir, err)
	}
	if last == 0 && len(metas) == 0 {
		return nil // a fresh member
	}
	what := fmt.Sprintf("its log ends at index %d", last)
	if len(metas) > 0 {
		what = fmt.Sprintf("snapshot %s (index %d, term %d) exists", metas[0].ID, metas[0].Index, metas[0].Term)
	}
	return fmt.Errorf("%s holds no Raft term or vote, but %s: the Raft state was lost (raft.db deleted, truncated or replaced), and this member may have voted in a term it no longer remembers. Remove it from the cluster (Remove on another member) and join it again with an empty DataDir under a new ID",
		filepath.Join(dir, "raft.db"), what)
}

func isNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not found")
}

// privateSnapshots wraps the file snapshot store so that what it writes is
// readable by this user only (Raft creates 0755 directories and 0644 files).
type privateSnapshots struct {
	raft.SnapshotStore
	dir string
}

func (p *privateSnapshots) Create(version raft.SnapshotVersion, index, term uint64, cfg raft.Configuration, cfgIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := p.SnapshotStore.Create(version, index, term, cfg, cfgIndex, trans)
	if err != nil {
		return nil, err
	}
	return &privateSink{SnapshotSink: sink, dir: p.dir}, nil
}

type privateSink struct {
	raft.SnapshotSink
	dir string
}

func (s *privateSink) Close() error {
	err := s.SnapshotSink.Close()
	tightenSnapshots(s.dir)
	return err
}

// tightenSnapshots makes the snapshot directory 0700 and its files 0600.
func tightenSnapshots(dir string) {
	root := filepath.Join(dir, "snapshots")
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			_ = os.Chmod(path, 0o700)
		} else {
			_ = os.Chmod(path, 0o600)
		}
		return nil
	})
}

// checkStoredEntries refuses a log holding an entry Raft would panic on at
// start (a configuration that does not decode): Raft replays every
// configuration entry after the last snapshot when it starts, so one bad
// entry would crash the member at every restart. Such an entry can only
// have been stored by an older build; this one refuses to store it.
func checkStoredEntries(logs raft.LogStore) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("read the Raft log: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("read the Raft log: %w", err)
	}
	for i := max(first, 1); i <= last && last > 0; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("read Raft log entry %d: %w: restore the data directory from a backup, or remove this member and join it again under a new ID", i, err)
		}
		if err := checkEntries([]*raft.Log{&l}); err != nil {
			return fmt.Errorf("the Raft log holds an entry Raft cannot process (%w): this member halts here instead of crashing at every start; remove it from the cluster and join it again with an empty DataDir under a new ID", err)
		}
	}
	return nil
}

// checkBoltPages reads raft.db's meta pages as bbolt would and checks that
// the pages they point at exist and are of the right kind. bbolt itself
// panics on a bad freelist or root page after it has mapped the file, and
// the mapping keeps its file lock held for the rest of the process; read
// here first with plain file reads, such a file is refused with no lock
// left behind.
func checkBoltPages(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := boltMeta(f)
	if err != nil {
		return err
	}
	ps := int64(m.pageSize)
	if end := int64(m.pgid) * ps; m.pgid > 1<<40 || end > size {
		return fmt.Errorf("its pages end at %d bytes, the file at %d: it was truncated", end, size)
	}
	if m.freelist != ^uint64(0) { // bbolt's "no freelist"
		fl, overflow := boltPageHeader(f, m.freelist, ps)
		if m.freelist >= m.pgid || fl != 0x10 || int64(m.freelist+uint64(overflow)+1)*ps > size {
			return fmt.Errorf("the freelist page %d is damaged", m.freelist)
		}
	}
	if fl, _ := boltPageHeader(f, m.root, ps); m.root >= m.pgid || (fl != 0x01 && fl != 0x02) { // branch, leaf
		return fmt.Errorf("the root page %d is damaged", m.root)
	}
	return nil
}

// boltMetaPage is what checkBoltPages needs of a bbolt meta page.
type boltMetaPage struct {
	pageSize             uint64
	root, freelist, pgid uint64
	txid                 uint64
}

// boltMeta returns the meta page bbolt would use: the valid one with the
// higher transaction ID.
func boltMeta(f *os.File) (boltMetaPage, error) {
	m0, ok0 := boltMetaAt(f, 0)
	ps := int64(os.Getpagesize())
	var m1 boltMetaPage
	var ok1 bool
	if ok0 && m0.pageSize >= 512 && m0.pageSize <= 1<<20 {
		ps = int64(m0.pageSize)
		m1, ok1 = boltMetaAt(f, ps)
	} else {
		// Meta page 0 is torn: find page 1 as bbolt does, trying every
		// page size it may have been written with (this machine's first).
		for _, try := range append([]int64{ps}, boltPageSizes()...) {
			if m1, ok1 = boltMetaAt(f, try); ok1 && int64(m1.pageSize) == try {
				ps = try
				break
			}
		}
	}
	m := m0
	switch {
	case ok1 && (!ok0 || m1.txid > m0.txid):
		m = m1
	case !ok0:
		return m, errors.New("neither meta page is valid")
	}
	if m.pageSize != uint64(ps) {
		return m, fmt.Errorf("meta pages disagree on the page size (%d, %d)", m0.pageSize, m1.pageSize)
	}
	return m, nil
}

// boltPageSizes are the page sizes bbolt may have written a file with.
func boltPageSizes() []int64 {
	var out []int64
	for ps := int64(1024); ps <= 16<<20; ps *= 2 {
		out = append(out, ps)
	}
	return out
}

// boltMetaAt reads the meta page at off: page header (id, flags, count,
// overflow), then magic, version, page size, flags, root bucket, freelist,
// high-water page, transaction ID and an FNV-64a checksum of the fields.
func boltMetaAt(f *os.File, off int64) (boltMetaPage, bool) {
	p := make([]byte, 80)
	if _, err := f.ReadAt(p, off); err != nil {
		return boltMetaPage{}, false
	}
	le := binary.LittleEndian
	if le.Uint16(p[8:]) != 0x04 || le.Uint32(p[16:]) != 0xED0CDAED || le.Uint32(p[20:]) != 2 {
		return boltMetaPage{}, false
	}
	h := fnv.New64a()
	h.Write(p[16:72])
	if h.Sum64() != le.Uint64(p[72:]) {
		return boltMetaPage{}, false
	}
	return boltMetaPage{pageSize: uint64(le.Uint32(p[24:])), root: le.Uint64(p[32:]), freelist: le.Uint64(p[48:]),
		pgid: le.Uint64(p[56:]), txid: le.Uint64(p[64:])}, true
}

// boltPageHeader returns a page's flags and overflow count (zero if unreadable).
func boltPageHeader(f *os.File, pg uint64, ps int64) (uint16, uint32) {
	p := make([]byte, 16)
	if _, err := f.ReadAt(p, int64(pg)*ps); err != nil {
		return 0, 0
	}
	return binary.LittleEndian.Uint16(p[8:]), binary.LittleEndian.Uint32(p[12:])
}
