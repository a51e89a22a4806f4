package sbd_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/xenha/xenha/fence/sbd"
)

// Two hosts share an SBD device: host-b watches its slot, host-a fences it.
func Example() {
	dir, _ := os.MkdirTemp("", "sbd-example")
	defer os.RemoveAll(dir)
	dev := filepath.Join(dir, "sbd.img") // in production: /dev/disk/by-id/...
	os.WriteFile(dev, nil, 0o600)
	ctx := context.Background()
	d, err := sbd.Create(ctx, dev, sbd.Header{Slots: 8, Loop: 10 * time.Millisecond,
		Watchdog: 100 * time.Millisecond, MsgWait: 200 * time.Millisecond}, "host-a", "host-b")
	if err != nil {
		fmt.Println(err)
		return
	}
	d.Close()

	fenced := make(chan sbd.Event, 1)
	w, _ := sbd.NewWatcher([]string{dev}, "host-b", func(e sbd.Event) { fenced <- e })
	go w.Run(ctx)

	f, _ := sbd.New("host-a", map[string][]string{"host-b": {dev}})
	proof, err := f.Fence(ctx, "host-b")
	if err != nil {
		fmt.Println(err)
		return
	}
	e := <-fenced
	fmt.Println("host-b:", e.Reason, e.Slot.Type, "from", e.Slot.Sender)
	fmt.Println("proof by", proof.Method)
	// Output:
	// host-b: poison pill off from host-a
	// proof by sbd
}
