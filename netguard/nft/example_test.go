package nft_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/netip"

	"github.com/xenha/xenha/netguard"
	"github.com/xenha/xenha/netguard/nft"
)

// The passive host of a gateway pair keeps its VMs running but silent; on
// failover it allows them and announces their addresses. (Needs root and
// a bridge br0; shown, not run.)
func Example() {
	ctx := context.Background()
	g, err := nft.New(nft.WithBridge("br0"))
	if err != nil {
		log.Fatal(err)
	}
	gw := netguard.VIF{VM: "gw-a", MAC: net.HardwareAddr{0x02, 0x58, 0x48, 0, 0, 0x0a}, Port: "vif3.0",
		Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.10")}}
	passive := netguard.State{Mode: netguard.BlockAll, Rules: []netguard.Rule{{VIF: gw, Allow: true}}}
	if err := g.Apply(ctx, passive); err != nil {
		log.Fatal(err) // wraps netguard.ErrUnavailable: retry, or fence this host
	}

	// Failover: this host becomes active.
	active := passive
	active.Mode = netguard.AllowAll
	if err := g.Apply(ctx, active); err != nil {
		log.Fatal(err)
	}
	if err := g.Announce(ctx, gw); err != nil {
		log.Print(err) // traffic flows anyway; neighbours learn on the next ARP
	}
	cur, _ := g.Current(ctx)
	fmt.Println(cur.Mode)
}
