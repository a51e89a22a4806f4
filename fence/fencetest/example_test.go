package fencetest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
)

// A cluster test scripts each host's fencing device and crashes the simulated
// host when it is fenced.
func ExampleFake() {
	f := fencetest.New(
		fencetest.Hosts("host-a"),
		fencetest.Host("host-b", fencetest.FailTimes(1, nil)),
		fencetest.OnFence(func(host string) { fmt.Println("crash", host) }),
	)
	ctx := context.Background()
	_, err := f.Fence(ctx, "host-b")
	fmt.Println("first try:", err)
	p, _ := f.Fence(ctx, "host-b")
	fmt.Println("second try:", p.Evidence, "; power", f.PowerOf("host-b"))
	// Output:
	// first try: fence host-b with fake: off: scripted failure 1 of 1: fencetest: scripted failure
	// crash host-b
	// second try: fake device reports power off ; power off
}

// Implementations of fence.Fencer run the conformance suite from their tests.
func ExampleRun() {
	// In a _test.go file, build a fresh subject per clause:
	newSubject := func() fencetest.Subject {
		f := fencetest.New(fencetest.Hosts("h1"), fencetest.Host("dead", fencetest.Silent()))
		return fencetest.Subject{
			Fencer:      f,
			Host:        "h1",
			IsOff:       func(context.Context) (bool, error) { return f.PowerOf("h1") == fence.PowerOff, nil },
			Unreachable: "dead",
			Timeout:     5 * time.Second,
		}
	}
	s := newSubject()
	fmt.Println(s.Host, "starts", s.Fencer.(*fencetest.Fake).PowerOf(s.Host))
	// func TestConformance(t *testing.T) { fencetest.Run(t, func(*testing.T) fencetest.Subject { return newSubject() }) }
	// Output: h1 starts on
}
