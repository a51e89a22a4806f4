package ha

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
	defer func() {
		if r := recover(); r != nil {
			store, err = nil, fmt.Errorf("%s is corrupt (%v): restore it from a backup, or remove this member from the cluster and join it again with an empty DataDir under a new ID", path, r)
		}
	}()
	if err := checkBolt(path); err != nil {
		return nil, err
	}
	store, err = raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bolt.Options{Timeout: boltOpenTimeout}})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: another process holds its lock (waited %v): stop it, or give this member another DataDir", path, boltOpenTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w: restore it from a backup, or remove this member from the cluster and join it again with an empty DataDir under a new ID", path, err)
	}
	_ = os.Chmod(path, 0o600)
	return store, nil
}

// checkBolt runs bbolt's consistency check over an existing raft.db, so
// that a damaged file is refused at start instead of panicking in the
// middle of Raft's work.
func checkBolt(path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltOpenTimeout, ReadOnly: true})
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("open %s: another process holds its lock (waited %v): stop it, or give this member another DataDir", path, boltOpenTimeout)
	}
	if err != nil {
		return fmt.Errorf("%s is corrupt (%w): restore it from a backup, or remove this member from the cluster and join it again with an empty DataDir under a new ID", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			return fmt.Errorf("%s is corrupt (%w): restore it from a backup, or remove this member from the cluster and join it again with an empty DataDir under a new ID", path, cerr)
		}
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
