package xenctltest_test

import (
	"context"
	"fmt"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// Two simulated hosts in one world: a VM migrates from one to the other, and
// the world tells where it runs.
func Example() {
	ctx := context.Background()
	world := xenctltest.NewWorld()
	a := xenctltest.New("host-a", xenctltest.WithWorld(world))
	b := xenctltest.New("host-b", xenctltest.WithWorld(world))

	xml := xenctltest.DomainXML("web1", "4dea22b3-1d52-d8f3-2516-782e98ab3fa0", 512<<10, 1, "52:54:00:12:34:56")
	if _, err := a.Define(ctx, xml); err != nil {
		panic(err)
	}
	if err := a.Start(ctx, "web1"); err != nil {
		panic(err)
	}
	fmt.Println("before:", world.Running("web1"))

	if err := a.Migrate(ctx, "web1", xenctl.MigrateOptions{URI: b.URI(), Persist: true}, nil); err != nil {
		panic(err)
	}
	fmt.Println("after:", world.Running("web1"))
	// Output:
	// before: [host-a]
	// after: [host-b]
}

// A libvirtd restart: calls fail with ErrUnavailable, the guest keeps running,
// and watchers see the reconnection with a fresh inventory.
func ExampleHost_RestartDaemon() {
	ctx := context.Background()
	h := xenctltest.New("host-a")
	events, _ := h.Events(ctx)
	_, _ = h.Define(ctx, xenctltest.DomainXML("db1", "5eea22b3-1d52-d8f3-2516-782e98ab3fa1", 1<<20, 2))
	_ = h.Start(ctx, "db1")
	h.RestartDaemon()
	for ev := range events {
		fmt.Println(ev.Kind, ev.Domain.Name, len(ev.Inventory))
		if ev.Kind == xenctl.EventReconnected {
			break
		}
	}
	// Output:
	// defined db1 0
	// started db1 0
	// disconnected  0
	// reconnected  1
}

// Injected faults make a call fail, hang or slow down.
func ExampleHost_Inject() {
	ctx := context.Background()
	h := xenctltest.New("host-a")
	h.Inject(xenctltest.Fault{Method: xenctltest.MethodHostInfo, Err: xenctl.ErrUnavailable, Times: 1})
	_, err := h.HostInfo(ctx)
	fmt.Println(err)
	_, err = h.HostInfo(ctx)
	fmt.Println(err)
	// Output:
	// HostInfo on host host-a: xenctl: hypervisor unavailable
	// <nil>
}
