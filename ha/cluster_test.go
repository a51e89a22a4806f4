package ha_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// putValue writes a register: VM key's MemoryKiB.
func putValue(ctx context.Context, c *ha.Cluster, key string, v uint64) error {
	return c.PutVM(ctx, ha.VM{Name: key, Spec: ha.VMSpec{MemoryKiB: v}, Policy: ha.Policy{Restart: ha.RestartOff}})
}

func getValue(ctx context.Context, c *ha.Cluster, key string, mode ha.ReadMode) (uint64, bool, error) {
	s, err := c.State(ctx, mode)
	if err != nil {
		return 0, false, err
	}
	vm, ok := s.VMs[key]
	if !ok {
		return 0, false, nil
	}
	return vm.Spec.MemoryKiB, true, nil
}

func TestFormAndReplicateInMemory(t *testing.T) {
	t.Parallel()
	hc := hatest.New(t, 3)
	ctx := ctxT(t, 30*time.Second)
	if _, err := hc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// Writes from every member, including followers (forwarded).
	for i := range 3 {
		if err := putValue(ctx, hc.Member(i), fmt.Sprintf("vm%d", i), uint64(100+i)); err != nil {
			t.Fatalf("write via %s: %v", hc.ID(i), err)
		}
	}
	for i := range 3 {
		for k := range 3 {
			v, ok, err := getValue(ctx, hc.Member(i), fmt.Sprintf("vm%d", k), ha.Consistent)
			if err != nil || !ok || v != uint64(100+k) {
				t.Fatalf("%s reads vm%d = %d, %v, %v; want %d", hc.ID(i), k, v, ok, err, 100+k)
			}
		}
	}
	s, err := hc.Member(0).State(ctx, ha.Consistent)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hosts) != 3 {
		t.Fatalf("hosts = %v, want 3", s.Hosts)
	}
	for id, h := range s.Hosts {
		if h.Role != ha.RoleVoter || h.Incarnation == "" || h.Epoch != 1 {
			t.Errorf("host %s = %+v; want a voter with an incarnation and epoch 1", id, h)
		}
	}
}

// stateDiff compares two states as JSON; "" if equal.
func stateDiff(a, b *ha.State) string {
	ja, _ := json.MarshalIndent(a, "", " ")
	jb, _ := json.MarshalIndent(b, "", " ")
	if bytes.Equal(ja, jb) {
		return ""
	}
	return fmt.Sprintf("\n--- first\n%s\n--- second\n%s", ja, jb)
}
