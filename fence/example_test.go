package fence_test

import (
	"context"
	"fmt"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
)

// A BMC that does not answer escalates to the next level, here a second
// method; every attempt is recorded for the incident timeline.
func ExampleChain() {
	bmc := fencetest.New(fencetest.Host("host-b", fencetest.Silent()), fencetest.Method("ipmi"))
	pill := fencetest.New(fencetest.Hosts("host-b"), fencetest.Method("sbd"), fencetest.Proves(fence.ProofSelfFence))
	chain, err := fence.NewChain([]fence.Level{
		{Method: "ipmi", Fencer: bmc, Timeout: 10 * time.Second},
		{Method: "sbd", Fencer: pill, Timeout: 30 * time.Second},
	})
	if err != nil {
		panic(err)
	}
	proof, attempts, err := chain.FenceAttempts(context.Background(), "host-b")
	if err != nil {
		fmt.Println("not fenced:", err)
		return
	}
	for _, a := range attempts {
		fmt.Printf("level %d %s: proof=%v err=%v\n", a.Level, a.Method, a.Proof != nil, a.Err)
	}
	fmt.Println("fenced by", proof.Method)
	// A poison pill proves only that the host will kill itself: the
	// cluster still waits out the host's lease before it moves its VMs.
	fmt.Println("proof:", proof.Kind)
	// Output:
	// level 0 ipmi: proof=false err=fence host-b with ipmi: connect: fence: fencing device unreachable
	// level 1 sbd: proof=true err=<nil>
	// fenced by sbd
	// proof: self-fence
}
