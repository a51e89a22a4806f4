package ha_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
)

// Three members on loopback, with mutual TLS from an ephemeral CA: the first
// bootstraps, the others join, and a write through any member is visible to
// consistent reads everywhere.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ca, err := pki.NewCA("example")
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "xenha-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	var members []*ha.Cluster
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("h%d", i)
		tc, err := ca.Member(id)
		if err != nil {
			log.Fatal(err)
		}
		cfg := ha.FastLAN()
		cfg.ID, cfg.ClusterID, cfg.JoinToken = id, "example", "s3cret"
		cfg.DataDir = dir + "/" + id
		cfg.BindAddr = "127.0.0.1:0"
		cfg.TLS = tc
		c, err := ha.New(ctx, cfg)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close(context.Background())
		if i == 1 {
			err = c.Bootstrap(ctx)
		} else {
			err = c.Join(ctx, members[0].Addr())
		}
		if err != nil {
			log.Fatal(err)
		}
		members = append(members, c)
	}

	// A write through a follower is forwarded to the leader.
	if err := members[2].PutVM(ctx, ha.VM{Name: "web1", Spec: ha.VMSpec{MemoryKiB: 1 << 20, VCPUs: 2}}); err != nil {
		log.Fatal(err)
	}
	s, err := members[1].State(ctx, ha.Consistent)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(s.Hosts), "hosts;", "web1 memory", s.VMs["web1"].Spec.MemoryKiB, "KiB")
	// Output: 3 hosts; web1 memory 1048576 KiB
}

// Validate names the field to change.
func ExampleConfig_Validate() {
	cfg := ha.FastLAN()
	cfg.ID, cfg.ClusterID, cfg.JoinToken, cfg.BindAddr, cfg.InmemStore, cfg.Insecure = "h1", "pool", "t", "198.18.0.1:7946", true, true
	cfg.Lease = 900 * time.Millisecond
	fmt.Println(cfg.Validate())
	// Output: ha: invalid config: ReassignAfter: Lease (900ms) must be shorter than ReassignAfter (850ms): raise ReassignAfter or lower Lease
}
