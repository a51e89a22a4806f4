package drbd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/storagetest"
)

func volume(gen uint64, params ...string) storage.Volume {
	p := map[string]string{"resource": "vm-disk1"}
	for i := 0; i+1 < len(params); i += 2 {
		p[params[i]] = params[i+1]
	}
	return storage.Volume{ID: "vm1-disk0", Kind: Kind, Params: p, Generation: gen}
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storagetest.Subject {
		r := newRig(t)
		hosts := map[storage.Backend]string{}
		a, b := r.backend("node-a"), r.backend("node-b")
		hosts[a], hosts[b] = "node-a", "node-b"
		return storagetest.Subject{
			A: a, B: b,
			Volume:  volume(0),
			Missing: storage.Volume{ID: "vm9-disk0", Kind: Kind, Params: map[string]string{"resource": "vm-disk9"}},
			Invalid: []storage.Volume{
				{ID: "v", Kind: Kind}, {ID: "v", Kind: Kind, Params: map[string]string{"resource": "bad name!"}},
				{ID: "v", Kind: Kind, Params: map[string]string{"resource": "vm-disk1", "volume": "x"}},
				{ID: "v", Kind: "nbd", Params: map[string]string{"resource": "vm-disk1"}},
			},
			StaleGenerations: true,
			RoleBased:        true,
			// Fencing powers the host off; DRBD's fence-peer handler then
			// marks its disk Outdated on the survivor.
			Fence: func(_ context.Context, be storage.Backend) {
				r.set(t, "role."+hosts[be], "Down")
				r.set(t, "outdated."+hosts[be], "yes")
			},
		}
	})
}

// TestDrbdadmPlansPromotion: real drbdadm, dry run (-d), prints the exact
// drbdsetup calls for our config: what the stand-in must receive.
func TestDrbdadmPlansPromotion(t *testing.T) {
	r := newRig(t)
	for action, want := range map[string]string{"primary": "drbdsetup primary vm-disk1", "secondary": "drbdsetup secondary vm-disk1"} {
		out, err := exec.Command("drbdadm", "-c", r.config, "-d", action, "vm-disk1").Output() // stdout only: stderr has modinfo noise
		if err != nil {
			t.Fatalf("drbdadm -d %s: %v", action, err)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("drbdadm -d %s printed %q, want %q", action, got, want)
		}
	}
	out, err := exec.Command("drbdadm", "-c", r.config, "sh-dev", "vm-disk1").Output()
	if err != nil || strings.TrimSpace(string(out)) != "/dev/drbd1000" {
		t.Fatalf("drbdadm sh-dev: %q %v", out, err)
	}
}

func TestPromoteFlow(t *testing.T) {
	r := newRig(t)
	a := r.backend("node-a")
	ctx := context.Background()
	src, err := a.Attach(ctx, volume(5))
	if err != nil {
		t.Fatal(err)
	}
	if src.Type != storage.SourceBlock || src.Path != "/dev/drbd1000" {
		t.Fatalf("source %+v, want block /dev/drbd1000", src)
	}
	if got := r.get(t, "role.node-a"); got != "Primary" {
		t.Fatalf("stand-in role %q after Attach", got)
	}
	want := []string{"status vm-disk1 --json", "primary vm-disk1", "status vm-disk1 --json"}
	if got := r.argv(t, "node-a"); !slices.Equal(got, want) {
		t.Fatalf("drbdsetup calls %q, want %q", got, want)
	}
	// Idempotent: already Primary, only a status.
	if _, err := a.Attach(ctx, volume(5)); err != nil {
		t.Fatal(err)
	}
	if got := r.argv(t, "node-a"); len(got) != 4 {
		t.Fatalf("second Attach ran %q", got[3:])
	}
	if err := a.Detach(ctx, volume(5)); err != nil {
		t.Fatal(err)
	}
	if got := r.get(t, "role.node-a"); got != "Secondary" {
		t.Fatalf("stand-in role %q after Detach", got)
	}
}

// TestPromoteRefusedWhilePeerPrimary replays a sample in which a peer is
// Primary: Promote refuses without asking drbdadm to promote.
func TestPromoteRefusedWhilePeerPrimary(t *testing.T) {
	for _, sample := range []string{"status-json-peer-lost-3node.json", "status-json-diskless-client.json"} {
		r := newRig(t)
		r.set(t, "sample", "testdata/samples/"+sample)
		err := r.backend("node-a").Promote(context.Background(), volume(1, "fenced", "node-c"))
		var se *storage.Error
		if !errors.Is(err, storage.ErrInUse) || !errors.As(err, &se) || !strings.Contains(err.Error(), "node-a is Primary") {
			t.Errorf("%s: %v; want ErrInUse naming node-a", sample, err)
		}
		for _, c := range r.argv(t, "node-a") {
			if strings.HasPrefix(c, "primary") {
				t.Errorf("%s: drbdsetup primary was called despite a Primary peer", sample)
			}
		}
	}
}

func TestPromoteRefusedByKernel(t *testing.T) {
	r := newRig(t)
	r.set(t, "refuse.node-a", "yes")
	err := r.backend("node-a").Promote(context.Background(), volume(1))
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "Multiple primaries") {
		t.Fatalf("%v; want ErrInUse quoting drbdsetup", err)
	}
}

func TestPromoteNeedsFenceForLostPeer(t *testing.T) {
	r := newRig(t)
	r.set(t, "role.node-b", "Down") // gone, but nobody fenced or outdated it
	a := r.backend("node-a")
	err := a.Promote(context.Background(), volume(2))
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "fenced=node-b") {
		t.Fatalf("%v; want ErrInUse telling to fence node-b", err)
	}
	if err := a.Promote(context.Background(), volume(2, "fenced", "node-b")); err != nil {
		t.Fatalf("with node-b fenced: %v", err)
	}
}

func TestDemoteWhileOpen(t *testing.T) {
	r := newRig(t)
	a := r.backend("node-a")
	if err := a.Promote(context.Background(), volume(1)); err != nil {
		t.Fatal(err)
	}
	r.set(t, "open.node-a", "yes")
	err := a.Demote(context.Background(), volume(1))
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "held open") {
		t.Fatalf("%v; want ErrInUse saying the device is open", err)
	}
}

func TestSplitBrainFromEvents(t *testing.T) {
	r := newRig(t)
	r.write(t, "events.node-a", splitBrainEvents)
	a := r.backend("node-a")
	ctx := context.Background()
	var helpers []string
	if err := a.Watch(ctx, "vm-disk1", func(ev Event) {
		if ev.Object == "helper" {
			helpers = append(helpers, ev.Verb+" "+ev.Get("helper"))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(helpers, []string{"call split-brain", "response split-brain"}) {
		t.Fatalf("helpers seen: %q", helpers)
	}
	if err := a.Promote(ctx, volume(1)); !errors.Is(err, storage.ErrSplitBrain) {
		t.Fatalf("Promote: %v, want ErrSplitBrain", err)
	}
	if err := a.Health(ctx, volume(1)); !errors.Is(err, storage.ErrSplitBrain) {
		t.Fatalf("Health: %v, want ErrSplitBrain", err)
	}
	for _, c := range r.argv(t, "node-a") {
		if strings.HasPrefix(c, "primary") {
			t.Fatal("promoted during a split brain")
		}
	}
}

func TestNotInConfig(t *testing.T) {
	r := newRig(t)
	_, err := r.backend("node-a").adm(context.Background(), "primary", "vm-disk9")
	if err = classify(err); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "not defined in your config") {
		t.Fatalf("%v; want ErrNotFound quoting drbdadm", err)
	}
}

// TestDeviceFromConfig: a status without minors (older drbdsetup) makes
// Attach ask real drbdadm for the device in the config (sh-dev).
func TestDeviceFromConfig(t *testing.T) {
	r := newRig(t)
	data, err := os.ReadFile("testdata/samples/status-json-healthy-2node.json")
	if err != nil {
		t.Fatal(err)
	}
	noMinor := strings.Replace(string(data), `"minor": 1000,`, "", 1)
	if noMinor == string(data) {
		t.Fatal("sample has no minor to remove")
	}
	r.write(t, "no-minor.json", noMinor)
	r.set(t, "sample", filepath.Join(r.dir, "no-minor.json"))
	src, err := r.backend("node-a").Attach(context.Background(), volume(1))
	if err != nil {
		t.Fatal(err)
	}
	if src.Path != "/dev/drbd1000" {
		t.Fatalf("source %+v, want /dev/drbd1000 from drbdadm sh-dev", src)
	}
}
