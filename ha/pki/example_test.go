package pki_test

import (
	"fmt"
	"log"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
)

// One CA per cluster, one certificate per member naming its ID.
func Example() {
	ca, err := pki.NewCA("pool")
	if err != nil {
		log.Fatal(err)
	}
	tc, err := ca.Member("h1")
	if err != nil {
		log.Fatal(err)
	}
	cfg := ha.DefaultConfig()
	cfg.ID, cfg.TLS = "h1", tc
	fmt.Println(tc.Cert.Leaf.DNSNames)
	// Output: [h1]
}
