package netguard_test

import (
	"fmt"
	"net"

	"github.com/xenha/xenha/netguard"
)

// A passive host blocks every guarded VIF whatever its rule says.
func ExampleState_Allowed() {
	web := netguard.VIF{VM: "web", MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}}
	s := netguard.State{Rules: []netguard.Rule{{VIF: web, Allow: true}}}
	fmt.Println(s.Allowed(web.MAC))
	s.Mode = netguard.BlockAll
	fmt.Println(s.Allowed(web.MAC))
	fmt.Println(s.Allowed(net.HardwareAddr{0x02, 0, 0, 0, 0, 9})) // not guarded
	// Output:
	// true true
	// false true
	// true false
}
