package netguardtest_test

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/xenha/xenha/netguard"
	"github.com/xenha/xenha/netguard/netguardtest"
)

// A controller under test isolates a host whose packet filter first refuses
// to program, then works.
func ExampleGuard() {
	ctx := context.Background()
	g := netguardtest.New()
	g.Fail(netguardtest.OpApply, fmt.Errorf("%w: netlink: EBUSY", netguard.ErrUnavailable), 1)

	vm := netguard.VIF{VM: "gw-a", MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}}
	isolate := netguard.State{Mode: netguard.BlockAll, Rules: []netguard.Rule{{VIF: vm, Allow: true}}}
	for attempt := 1; ; attempt++ {
		err := g.Apply(ctx, isolate)
		if err == nil {
			break
		}
		fmt.Println("attempt", attempt, "unavailable:", errors.Is(err, netguard.ErrUnavailable))
	}
	fmt.Println("gw-a allowed:", g.Allowed(vm.MAC))
	for _, c := range g.Calls() {
		fmt.Println(c)
	}
	// Output:
	// attempt 1 unavailable: true
	// gw-a allowed: false
	// apply block-all (1 rules) -> netguard: packet filter unavailable: netlink: EBUSY
	// apply block-all (1 rules) -> <nil>
}
