package pki_test

import (
	"fmt"
	"log"
	"os"

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

// A host's program reads its identity from the files the operator
// installed; here WriteMember stands in for the operator.
func ExampleLoadFiles() {
	ca, err := pki.NewCA("pool")
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pki")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	files, err := ca.WriteMember(dir, "h1")
	if err != nil {
		log.Fatal(err)
	}
	tc, err := pki.LoadFiles(files.CA, files.Cert, files.Key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tc.Cert.Leaf.DNSNames)
	// Output: [h1]
}
