package libvirt_test

import (
	"context"
	"fmt"

	"github.com/xenha/xenha/fence/libvirt"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// A lab cluster whose hosts are VMs on one outer hypervisor: fencing host-b
// destroys its domain there. In production, Hypervisor is an xenctl/libvirt
// connection to the outer libvirtd.
func ExampleNew() {
	ctx := context.Background()
	lab := xenctltest.New("lab")
	lab.Define(ctx, xenctltest.DomainXML("host-b", "6f1c1f3e-2a2b-4c3d-8e9f-0a1b2c3d4e5f", 1<<20, 2))
	lab.Start(ctx, "host-b")

	f, _ := libvirt.New(map[string]libvirt.Target{"host-b": {Hypervisor: lab, Domain: "host-b", Label: "qemu+ssh://lab/system"}})
	proof, err := f.Fence(ctx, "host-b")
	fmt.Println(proof.Evidence, err)
	// Output: domain "host-b" on qemu+ssh://lab/system destroyed; it reads shutoff (destroyed) <nil>
}
