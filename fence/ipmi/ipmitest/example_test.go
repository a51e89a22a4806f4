package ipmitest_test

import (
	"context"
	"fmt"

	"github.com/xenha/xenha/fence/ipmi"
	"github.com/xenha/xenha/fence/ipmi/ipmitest"
)

// A simulated host whose BMC stops it when fenced.
func Example() {
	bmc, err := ipmitest.Start(ipmitest.WithPowerHook(func(on bool) {
		if !on {
			fmt.Println("host powered off: stop its services here")
		}
	}))
	if err != nil {
		panic(err)
	}
	defer bmc.Close()
	f, err := ipmi.New(map[string]ipmi.Target{"h1": bmc.Target()},
		ipmi.WithPasswords(ipmitest.Passwords(map[string]*ipmitest.BMC{"h1": bmc})))
	if err != nil {
		panic(err)
	}
	proof, err := f.Fence(context.Background(), "h1")
	if err != nil {
		panic(err)
	}
	fmt.Println(proof.Host, proof.Method)
	// Output:
	// host powered off: stop its services here
	// h1 ipmi
}
