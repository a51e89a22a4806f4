package storagetest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/storagetest"
)

func fakeSubject(opts ...storagetest.Option) func(t *testing.T) storagetest.Subject {
	return func(t *testing.T) storagetest.Subject {
		st := storagetest.NewStore(opts...)
		st.Create("vm1-disk0")
		return storagetest.Subject{
			A:                st.Backend("h1"),
			B:                st.Backend("h2"),
			Volume:           storage.Volume{ID: "vm1-disk0", Kind: storagetest.Kind},
			Missing:          storage.Volume{ID: "nope", Kind: storagetest.Kind},
			Invalid:          []storage.Volume{{Kind: storagetest.Kind}, {ID: "vm1-disk0", Kind: "iscsi"}},
			StaleGenerations: true,
			Exclusive:        true,
			Write: func(_ context.Context, b storage.Backend, v storage.Volume) error {
				return st.Write(b.(*storagetest.Backend).Host(), v.ID)
			},
		}
	}
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, fakeSubject())
}

func TestConformanceUnenforced(t *testing.T) {
	mk := fakeSubject(storagetest.Unenforced())
	storagetest.Run(t, func(t *testing.T) storagetest.Subject {
		s := mk(t)
		s.Exclusive = false
		return s
	})
}

func TestConformanceRoleBased(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storagetest.Subject {
		st := storagetest.NewStore()
		st.Create("r0")
		return storagetest.Subject{
			A:                st.RoleBackend("h1"),
			B:                st.RoleBackend("h2"),
			Volume:           storage.Volume{ID: "r0"},
			Missing:          storage.Volume{ID: "r9"},
			Invalid:          []storage.Volume{{}},
			StaleGenerations: true,
			RoleBased:        true,
			Fence: func(_ context.Context, b storage.Backend) {
				st.Fence(b.(*storagetest.RoleBackend).Host())
			},
		}
	})
}

// TestSuiteCatchesBrokenBackend proves the suite can fail: unenforced storage
// that claims to be Exclusive lets two hosts write, and OneWriter must say so.
// The suite runs in a child process so its failure is observed, not inherited.
func TestSuiteCatchesBrokenBackend(t *testing.T) {
	if os.Getenv("STORAGETEST_BROKEN_CHILD") == "1" {
		storagetest.Run(t, func(t *testing.T) storagetest.Subject {
			s := fakeSubject(storagetest.Unenforced())(t)
			s.Exclusive = true
			return s
		})
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSuiteCatchesBrokenBackend$/OneWriter", "-test.count=1")
	cmd.Env = append(os.Environ(), "STORAGETEST_BROKEN_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("suite passed a backend that lets two hosts write:\n%s", out)
	}
	if !strings.Contains(string(out), "--- FAIL: TestSuiteCatchesBrokenBackend/OneWriter") || !strings.Contains(string(out), "ErrInUse") && !strings.Contains(string(out), "in use") {
		t.Fatalf("suite failed, but not in OneWriter as expected:\n%s", out)
	}
}

func TestTakeoverCutsOffOldWriter(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewStore()
	st.Create("v")
	a, b := st.Backend("a"), st.Backend("b")
	if _, err := a.Attach(ctx, storage.Volume{ID: "v", Generation: 3}); err != nil {
		t.Fatal(err)
	}
	if err := st.Write("a", "v"); err != nil {
		t.Fatalf("holder cannot write: %v", err)
	}
	if err := st.Write("b", "v"); !storagetest.IsNotAttached(err) {
		t.Fatalf("non-holder write: %v, want not attached", err)
	}
	if _, err := b.Attach(ctx, storage.Volume{ID: "v", Generation: 3}); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("same generation from b: %v, want ErrInUse", err)
	}
	if _, err := b.Attach(ctx, storage.Volume{ID: "v", Generation: 4}); err != nil {
		t.Fatal(err)
	}
	if err := st.Write("a", "v"); !errors.Is(err, storage.ErrStaleGeneration) {
		t.Fatalf("old writer write: %v, want ErrStaleGeneration", err)
	}
	if w := st.Writers("v"); len(w) != 1 || w[0] != "b" {
		t.Fatalf("writers %v, want [b]", w)
	}
	if g := st.Generation("v"); g != 4 {
		t.Fatalf("generation %d, want 4", g)
	}
}

func TestRolePromotionNeedsFence(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewStore()
	st.Create("r0")
	a, b := st.RoleBackend("a"), st.RoleBackend("b")
	if err := a.Promote(ctx, storage.Volume{ID: "r0", Generation: 1}); err != nil {
		t.Fatal(err)
	}
	err := b.Promote(ctx, storage.Volume{ID: "r0", Generation: 2})
	if !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("promote while peer primary: %v, want ErrInUse", err)
	}
	var se *storage.Error
	if !errors.As(err, &se) || se.Host != "b" || se.Op != "promote" || se.Volume != "r0" {
		t.Fatalf("error %#v does not name host, op and volume", err)
	}
	st.Fence("a")
	if err := b.Promote(ctx, storage.Volume{ID: "r0", Generation: 2}); err != nil {
		t.Fatal(err)
	}
	if p := st.Primary("r0"); p != "b" {
		t.Fatalf("primary %q, want b", p)
	}
}

func TestInjectedFaults(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewStore()
	st.Create("v")
	a := st.Backend("a")
	boom := errors.New("target reset")
	remove := st.Inject(storagetest.Fault{Host: "a", Op: storagetest.OpAttach, Err: boom, Times: 2})
	defer remove()
	for i := range 2 {
		if _, err := a.Attach(ctx, storage.Volume{ID: "v", Generation: 1}); !errors.Is(err, boom) {
			t.Fatalf("attach %d: %v, want injected error", i, err)
		}
	}
	if _, err := a.Attach(ctx, storage.Volume{ID: "v", Generation: 1}); err != nil {
		t.Fatalf("fault outlived Times: %v", err)
	}
	if err := st.Backend("b").Health(ctx, storage.Volume{ID: "v"}); err != nil {
		t.Fatalf("fault for host a hit host b: %v", err)
	}

	rm := st.Inject(storagetest.Fault{Volume: "v", Op: storagetest.OpHealth, Hang: true})
	hctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	err := a.Health(hctx, storage.Volume{ID: "v"})
	cancel()
	if !errors.Is(err, storage.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v, want ErrUnreachable and DeadlineExceeded", err)
	}
	rm()
	if err := a.Health(ctx, storage.Volume{ID: "v"}); err != nil {
		t.Fatalf("after removing the hang: %v", err)
	}

	calls := st.Calls()
	if len(calls) != 6 || calls[0].Op != storagetest.OpAttach || calls[0].Err == nil || calls[5].Op != storagetest.OpHealth || calls[5].Err != nil {
		t.Fatalf("call log %+v", calls)
	}
}

func TestInjectedDelayRespectsContext(t *testing.T) {
	st := storagetest.NewStore()
	st.Create("v")
	st.Inject(storagetest.Fault{Op: storagetest.OpDetach, Delay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- st.Backend("a").Detach(ctx, storage.Volume{ID: "v"}) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("delayed detach: %v, want Canceled", err)
	}
}

// TestRacingTakeovers has hosts race to attach at random generations and
// checks that the enforced store never reports two writers and always keeps
// the highest generation's holder.
func TestRacingTakeovers(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	st := storagetest.NewStore()
	st.Create("v")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad []string
	var mu sync.Mutex
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if w := st.Writers("v"); len(w) > 1 {
				mu.Lock()
				bad = append(bad, fmt.Sprint(w))
				mu.Unlock()
			}
		}
	}()
	for h := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(h)))
			b := st.Backend(fmt.Sprintf("h%d", h))
			for range 200 {
				v := storage.Volume{ID: "v", Generation: r.Uint64N(50)}
				if r.IntN(3) == 0 {
					b.Detach(context.Background(), v)
				} else {
					b.Attach(context.Background(), v)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if len(bad) > 0 {
		t.Fatalf("seed %d: saw several writers: %v", seed, bad[:min(5, len(bad))])
	}
	ok := 0
	for _, c := range st.Calls() {
		if c.Op == storagetest.OpAttach && c.Err == nil {
			ok++
		}
	}
	if ok == 0 {
		t.Fatalf("seed %d: no attach succeeded; the race proved nothing", seed)
	}
}

func TestWithParamCopies(t *testing.T) {
	good := storage.Volume{ID: "vm1-disk0", Kind: "nbd", Generation: 3, Params: map[string]string{"server": "198.18.0.1", "port": "10809"}}
	set := storagetest.WithParam(good, "bad-port", "port", "0")
	gone := storagetest.WithParam(good, "no-server", "server", "")
	if set.ID != "bad-port" || set.Kind != "nbd" || set.Generation != 3 || set.Params["port"] != "0" || set.Params["server"] != "198.18.0.1" {
		t.Errorf("WithParam(set port) = %+v", set)
	}
	if _, ok := gone.Params["server"]; ok || gone.ID != "no-server" || gone.Params["port"] != "10809" {
		t.Errorf("WithParam(delete server) = %+v", gone)
	}
	if good.ID != "vm1-disk0" || good.Params["port"] != "10809" || good.Params["server"] != "198.18.0.1" {
		t.Errorf("WithParam changed the volume it copied: %+v", good)
	}
}
