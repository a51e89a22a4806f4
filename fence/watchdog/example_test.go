package watchdog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/xenha/xenha/fence/watchdog"
)

// Each host feeds its watchdog from its committed lease; the leader proves a
// silent host dead once its lease and watchdog ran out.
func Example() {
	dir, _ := os.MkdirTemp("", "wd-example")
	defer os.RemoveAll(dir)
	dev := filepath.Join(dir, "watchdog") // in production: /dev/watchdog
	os.WriteFile(dev, nil, 0o600)

	k, err := watchdog.Open(dev, watchdog.WithTimeout(100*time.Millisecond))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)

	const lease = 200 * time.Millisecond
	renewed := time.Now()
	k.Feed(renewed.Add(lease)) // on each committed renewal

	// On the leader:
	f, _ := watchdog.NewFencer(func(context.Context, string) (time.Time, error) { return renewed, nil },
		lease, k.Timeout(), watchdog.WithMargin(50*time.Millisecond))
	proof, err := f.Fence(ctx, "host-b")
	fmt.Println(proof.Method, err, proof.Time.Sub(renewed))
	// Output: watchdog <nil> 350ms
}
