//go:build cgo

// Package failoverit_test runs xenha's failover against real components:
// members over loopback TCP with bbolt logs, each host a private libvirt
// test-driver hypervisor through xenctl/libvirt (cgo, so it lives outside
// ha, which must not depend on the cgo bindings).
package failoverit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
	"github.com/xenha/xenha/netguard/netguardtest"
	"github.com/xenha/xenha/xenctl/libvirt"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

const hostXML = `<node>
  <cpu><mhz>2000</mhz><model>Skylake</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
</node>
`

// A host dies (its domains destroyed, its member gone); its VMs are fenced
// and restarted on the libvirt test-driver hosts of the survivors, and no
// VM ever runs on two of them.
func TestFailoverOnLibvirtTestDriver(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	hv := map[string]*libvirt.Hypervisor{}
	open := func(id string) *libvirt.Hypervisor {
		mu.Lock()
		defer mu.Unlock()
		if h := hv[id]; h != nil {
			return h
		}
		p := filepath.Join(dir, id+".xml")
		if err := os.WriteFile(p, []byte(hostXML), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		h, err := libvirt.Open(ctx, "test://"+p)
		if err != nil {
			t.Fatalf("open test driver for %s: %v", id, err)
		}
		t.Cleanup(func() { h.Close() })
		hv[id] = h
		return h
	}
	var c *hatest.Cluster
	powerOff := func(id string) {
		// The test driver cannot lose power: destroy what runs, then crash
		// the member, as a power cut would.
		h := open(id)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		doms, _ := h.Domains(ctx)
		for _, d := range doms {
			_ = h.Destroy(ctx, d.Name)
		}
		var i int
		fmt.Sscanf(id, "h%d", &i)
		c.Crash(i - 1)
	}
	bmc := fencetest.New(fencetest.Method("fake-bmc"), fencetest.Hosts("h1", "h2", "h3"))
	bmc.SetOnFence(powerOff)
	c = hatest.New(t, 3, hatest.WithTCP(), hatest.WithInsecure(), hatest.WithProfile(hatest.SharedCPU()),
		hatest.WithConfig(func(i int, cfg *ha.Config) {
			id := fmt.Sprintf("h%d", i+1)
			cfg.Hypervisor = open(id)
			cfg.Guard = netguardtest.New()
			cfg.Fencer = bmc
		}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	running := func(vm string) []string {
		var on []string
		for _, id := range []string{"h1", "h2", "h3"} {
			d, err := open(id).Domain(ctx, vm)
			if err == nil && d.State.Executing() {
				on = append(on, id)
			}
		}
		return on
	}
	leader := func() *ha.Cluster {
		for {
			if l, err := c.WaitLeader(ctx); err == nil {
				if m := c.Member(l); m != nil {
					return m
				}
			}
			if ctx.Err() != nil {
				t.Fatal("no leader")
			}
		}
	}
	var names []string
	for i := range 4 {
		name := fmt.Sprintf("vm%d", i)
		uuid := fmt.Sprintf("4dea22b3-1d52-d8f3-2516-%012x", i+1)
		vm := ha.VM{Name: name, UUID: uuid,
			Spec:   ha.VMSpec{DomainXML: xenctltest.DomainXMLType("test", name, uuid, 65536, 1), MemoryKiB: 65536, VCPUs: 1},
			Policy: ha.Policy{Restart: ha.RestartAlways}}
		if err := leader().PutVM(ctx, vm); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			}
			for _, vm := range names {
				if on := running(vm); len(on) > 1 {
					t.Fatalf("VM %s runs on %v", vm, on)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("every VM running", func() bool {
		for _, vm := range names {
			if len(running(vm)) != 1 {
				return false
			}
		}
		return true
	})
	l, _ := c.WaitLeader(ctx)
	victim := fmt.Sprintf("h%d", (l+1)%3+1)
	var moving []string
	for _, vm := range names {
		if slices.Equal(running(vm), []string{victim}) {
			moving = append(moving, vm)
		}
	}
	powerOff(victim)
	wait("the victim's VMs running elsewhere", func() bool {
		for _, vm := range moving {
			if on := running(vm); len(on) != 1 || on[0] == victim {
				return false
			}
		}
		return true
	})
	s, err := leader().State(ctx, ha.Consistent)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Fences) != 1 || s.Fences[0].Host != victim {
		t.Fatalf("fences %+v, want one for %s", s.Fences, victim)
	}
	t.Logf("moved %v off %s", moving, victim)
}
