package agent_test

import (
	"context"
	"fmt"

	"github.com/xenha/xenha/fence/agent"
)

// fence_ipmilan configured for one host; the password is read from a local
// file at each run and passed on the agent's stdin only.
func ExampleNew() {
	f, err := agent.New(map[string]agent.Target{
		"host-b": {
			Agent:        "/bin/true", // in production: "fence_ipmilan"
			Options:      map[string]string{"ip": "198.18.0.12", "username": "fence", "lanplus": "1", "cipher": "17"},
			PasswordFile: "/etc/xenha/bmc-host-b.pass",
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = func(ctx context.Context) error {
		if err := f.Validate(ctx); err != nil { // at start-up
			return err
		}
		_, err := f.Fence(ctx, "host-b")
		return err
	}
	fmt.Println(f.Hosts())
	// Output: [host-b]
}
