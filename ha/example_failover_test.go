package ha_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/netguard/netguardtest"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// Automatic failover on three simulated hosts: when the host running web1
// dies, the leader fences it, and web1 starts on another host.
func Example_failover() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hypervisors := xenctltest.NewWorld()
	members := map[string]*ha.Cluster{}
	// The fencing device: powering a host off kills its hypervisor (its
	// VMs die) and its member.
	bmc := fencetest.New(fencetest.Method("fake-bmc"), fencetest.Hosts("h1", "h2", "h3"))
	bmc.SetOnFence(func(host string) {
		hypervisors.Host(host).PowerOff()
		members[host].Close(context.Background())
	})
	var first string
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("h%d", i)
		cfg := ha.FastLAN()
		cfg.ID, cfg.ClusterID, cfg.JoinToken = id, "example", "s3cret"
		cfg.BindAddr, cfg.Insecure, cfg.InmemStore = "127.0.0.1:0", true, true
		cfg.Hypervisor = xenctltest.New(id, xenctltest.WithWorld(hypervisors))
		cfg.Guard = netguardtest.New()
		cfg.Fencer = bmc
		c, err := ha.New(ctx, cfg)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close(context.Background())
		if i == 1 {
			err, first = c.Bootstrap(ctx), c.Addr()
		} else {
			err = c.Join(ctx, first)
		}
		if err != nil {
			log.Fatal(err)
		}
		members[id] = c
	}
	// Wait until every host has registered (online, with its capacity).
	for ready := false; !ready; time.Sleep(10 * time.Millisecond) {
		s, err := members["h1"].State(ctx, ha.Stale)
		if err != nil || ctx.Err() != nil {
			log.Fatal("hosts did not come online")
		}
		ready = len(s.Hosts) == 3
		for _, h := range s.Hosts {
			ready = ready && h.State == ha.HostOnline && h.Capacity.MemoryKiB > 0
		}
	}
	uuid := "6b1c2b8e-5d1f-4c1e-9a53-000000000001"
	err := members["h1"].PutVM(ctx, ha.VM{
		Name: "web1", UUID: uuid,
		Spec: ha.VMSpec{
			DomainXML: xenctltest.DomainXML("web1", uuid, 1<<20, 1, "52:54:00:00:00:01"),
			MemoryKiB: 1 << 20, VCPUs: 1, MACs: []string{"52:54:00:00:00:01"},
		},
		Policy: ha.Policy{Restart: ha.RestartAlways, Preferred: []string{"h2"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	waitRunning := func(not string) string {
		for ctx.Err() == nil {
			if on := hypervisors.Running("web1"); len(on) == 1 && on[0] != not {
				return on[0]
			}
			time.Sleep(10 * time.Millisecond)
		}
		log.Fatal("web1 did not start")
		return ""
	}
	before := waitRunning("")
	hypervisors.Host(before).PowerOff() // the host dies
	members[before].Close(ctx)
	after := waitRunning(before)
	s, err := members[after].State(ctx, ha.Consistent)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("web1 ran on %s, now on %s; %s fenced by %s\n", before, after, s.Fences[0].Host, s.Fences[0].Method)
	// Output: web1 ran on h2, now on h1; h2 fenced by fake-bmc
}

// An operator who powered a host off by hand, because its fencing device is
// broken, says so; the host's VMs then move.
func ExampleCluster_AckFence() {
	var c *ha.Cluster // a running member (this example is compiled, not run)
	ctx := context.Background()
	if err := c.AckFence(ctx, "h2", "alice"); err != nil {
		log.Fatal(err) // ErrHostAlive if h2 still renews its lease
	}
}

// Drain a host for maintenance, then move one VM back.
func ExampleCluster_Maintenance() {
	var c *ha.Cluster // a running member (this example is compiled, not run)
	ctx := context.Background()
	if err := c.Maintenance(ctx, "h2", true); err != nil {
		log.Fatal(err)
	}
	// ... after the work:
	if err := c.Maintenance(ctx, "h2", false); err != nil {
		log.Fatal(err)
	}
	if err := c.Migrate(ctx, "web1", "h2"); err != nil {
		log.Fatal(err)
	}
}
