package libvirt_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/libvirt"
	"github.com/xenha/xenha/xenctl/xenctltest"
)

// Open a host and list its domains. test:///default is libvirt's built-in
// simulated host, which starts with one running domain named "test"; a real
// host is "xen:///system" or "qemu:///system".
func ExampleOpen() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := libvirt.Open(ctx, "test:///default")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	domains, err := h.Domains(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range domains {
		fmt.Println(d.Name, d.State)
	}
	// Output:
	// test running
}

// Define and boot a domain, then watch it stop. Errors name the host and the
// domain, and wrap the xenctl sentinels callers branch on.
func ExampleHypervisor_Events() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := libvirt.Open(ctx, "test:///default")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	events, err := h.Events(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	const name = "example-events"
	if _, err := h.Define(ctx, xenctltest.DomainXML(name, "0f8fad5b-d9cb-469f-a165-70867728950e", 65536, 1)); err != nil {
		fmt.Println(err)
		return
	}
	defer h.Undefine(context.Background(), name)
	_ = h.Start(ctx, name)
	_ = h.Destroy(ctx, name)
	for ev := range events {
		if ev.Domain.Name != name {
			continue
		}
		fmt.Println(ev.Kind, ev.Domain.State, ev.Domain.Reason)
		if ev.Kind == xenctl.EventStopped {
			break
		}
	}
	_, err = h.Domain(ctx, "no-such-domain")
	fmt.Println(errors.Is(err, xenctl.ErrNoDomain))
	// Output:
	// defined shutoff added
	// started running booted
	// stopped shutoff destroyed
	// true
}
