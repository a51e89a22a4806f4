package ipmi_test

import (
	"context"
	"fmt"

	"github.com/xenha/xenha/fence/ipmi"
)

// Each host's BMC is configured locally; the password stays in a local file
// and never enters the cluster's replicated log.
func ExampleNew() {
	f, err := ipmi.New(map[string]ipmi.Target{
		"host-b": {
			Address:      "198.18.0.12",
			User:         "fence",
			CipherSuites: []int{17, 3},
			PasswordFile: "/etc/xenha/bmc-host-b.pass",
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = func(ctx context.Context) {
		proof, err := f.Fence(ctx, "host-b")
		fmt.Println(proof, err)
	}
	fmt.Println(f.Hosts())
	// Output: [host-b]
}
