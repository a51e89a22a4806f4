package ha_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/xenha/xenha/ha"
)

// Disk faults: each must end in an error that says what happened and what
// to do, never in a hang, a panic or a silent reset.

// stoppedMember runs a 3-member TCP cluster with some writes and a snapshot
// on member 2, crashes member 2 and returns its configuration.
func stoppedMember(t *testing.T) (ha.Config, context.Context) {
	t.Helper()
	hc := tcpCluster(t, 3)
	ctx := ctxT(t, 90*time.Second)
	waitLeader(t, ctx, hc)
	for k := range 5 {
		if err := putValue(ctx, hc.Member(0), fmt.Sprintf("vm%d", k), uint64(k+1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hc.Member(2).State(ctx, ha.Consistent); err != nil {
		t.Fatal(err)
	}
	if err := hc.Member(2).Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := hc.Config(2)
	hc.Crash(2)
	cfg.BindAddr, cfg.Network = "127.0.0.1:0", nil
	return cfg, ctx
}

// startRefused starts a member on cfg and wants an error saying says.
func startRefused(t *testing.T, ctx context.Context, cfg ha.Config, says string) {
	t.Helper()
	c, err := ha.New(ctx, cfg)
	if err == nil {
		c.Close(context.Background())
		t.Fatalf("member started; want an error saying %q", says)
	}
	if !strings.Contains(err.Error(), says) {
		t.Fatalf("got %v, want an error saying %q", err, says)
	}
	t.Logf("refused: %v", err)
}

func TestDataDirSecondProcessIsRefused(t *testing.T) {
	t.Parallel()
	hc := tcpCluster(t, 1)
	cfg := hc.Config(0)
	// A second process, really: this test binary again, opening the same
	// directory. It must fail at once, naming this process.
	cmd := exec.Command(os.Args[0], "-test.run=^TestDataDirHelperProcess$")
	cmd.Env = append(os.Environ(), "XENHA_HELPER_DATADIR="+cfg.DataDir)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the second process hangs opening the data directory")
	}
	want := fmt.Sprintf("in use by process %d", os.Getpid())
	if err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("second process: err %v, output:\n%s\nwant it to say %q", err, out, want)
	}
	// In this process too.
	cfg.BindAddr, cfg.Network = "127.0.0.1:0", nil
	startRefused(t, ctxT(t, 30*time.Second), cfg, want)
	if _, err := hc.Member(0).State(context.Background(), ha.Stale); err != nil {
		t.Fatalf("the holder suffered: %v", err)
	}
}

// TestDataDirHelperProcess is the second process of the test above.
func TestDataDirHelperProcess(t *testing.T) {
	dir := os.Getenv("XENHA_HELPER_DATADIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	cfg := ha.FastLAN()
	cfg.ID, cfg.ClusterID, cfg.JoinToken = "h1", "hatest", "t"
	cfg.BindAddr, cfg.DataDir, cfg.Insecure = "127.0.0.1:0", dir, true
	c, err := ha.New(context.Background(), cfg)
	if err == nil {
		c.Close(context.Background())
		fmt.Println("opened the data directory")
		os.Exit(0)
	}
	fmt.Println(err)
}

func TestDataDirLostTermIsRefused(t *testing.T) {
	t.Parallel()
	cfg, ctx := stoppedMember(t)
	if err := os.Truncate(filepath.Join(cfg.DataDir, "raft.db"), 0); err != nil {
		t.Fatal(err)
	}
	startRefused(t, ctx, cfg, "holds no Raft term or vote, but snapshot")
}

func TestDataDirCorruptBoltIsRefused(t *testing.T) {
	t.Parallel()
	cfg, ctx := stoppedMember(t)
	path := filepath.Join(cfg.DataDir, "raft.db")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Cut in the middle of its pages, as a failing disk or a bad copy
	// would (at 64 KiB of a larger file, bbolt itself panicked), or with
	// a page overwritten.
	garbled := func(at, n int) []byte {
		b := append([]byte(nil), good...)
		for i := at; i < at+n && i < len(b); i++ {
			b[i] = byte(i*7 + 3)
		}
		return b
	}
	for _, tt := range []struct {
		name   string
		data   []byte
		starts bool // bbolt keeps two meta pages: losing one loses nothing
	}{
		{"truncated to one page", good[:4096], false},
		{"truncated to the meta pages", good[:8192], false},
		{"truncated inside its pages", good[:16384], false},
		{"both meta pages overwritten", garbled(0, 8192), false},
		{"one meta page overwritten", garbled(0, 4096), true},
		{"every data page overwritten", garbled(8192, len(good)), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := ha.New(ctx, cfg)
			if tt.starts {
				if err != nil {
					t.Fatalf("refused a file bbolt can read: %v", err)
				}
				c.Close(context.Background())
				return
			}
			if err == nil {
				c.Close(context.Background())
				t.Fatal("started on a damaged raft.db")
			}
			if !strings.Contains(err.Error(), "raft.db is corrupt") {
				t.Fatalf("error %v does not say raft.db is corrupt", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestDataDirStoredGarbageConfigurationIsRefused(t *testing.T) {
	t.Parallel()
	cfg, ctx := stoppedMember(t)
	db, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	last, err := db.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	// What an older build would have stored from a bad leader.
	if err := db.StoreLog(&raft.Log{Index: last + 1, Term: 1 << 20, Type: raft.LogConfiguration, Data: []byte{0x81, 0xc1}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	startRefused(t, ctx, cfg, "Raft configuration does not decode")
}

func TestDataDirPermissions(t *testing.T) {
	t.Parallel()
	cfg, _ := stoppedMember(t)
	err := filepath.WalkDir(cfg.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
