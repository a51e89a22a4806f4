package iscsi_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/iscsi"
)

// closedLoopbackPortal returns a loopback portal nothing listens on.
func closedLoopbackPortal() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A health check of a LUN: log in, read its capacity, log out. A portal that
// does not answer is storage.ErrUnreachable, so a caller can tell a dead
// storage server from a missing LUN (storage.ErrNotFound).
func ExampleReadCapacity() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := iscsi.ReadCapacity(ctx, closedLoopbackPortal(), "iqn.2026-11.com.example:vm1", 1)
	fmt.Println("unreachable:", errors.Is(err, storage.ErrUnreachable))
	// Output: unreachable: true
}

// A backend in network-disk mode hands QEMU the LUN; every error names the
// volume, the host and the step.
func ExampleNew() {
	b := iscsi.New("host-a", iscsi.WithProbe(iscsi.WithInitiatorName("iqn.2026-11.com.example:host-a")))
	vol := storage.Volume{ID: "vm1-disk0", Kind: iscsi.Kind, Generation: 7, Params: map[string]string{
		iscsi.ParamPortal: "198.18.0.10:3260",
		iscsi.ParamIQN:    "iqn.2026-11.com.example:vm1",
		// no "lun": LUN 0 is often the controller, so there is no default
	}}
	_, err := b.Attach(context.Background(), vol)
	var se *storage.Error
	fmt.Println(errors.Is(err, storage.ErrInvalidVolume), errors.As(err, &se) && se.Op == "attach" && se.Host == "host-a")
	// Output: true true
}

// The storage-level fence in pure Go: the survivor takes the LUN over at
// the new generation, and the target refuses the fenced host's writes from
// then on (storage.ErrInUse on its WRITE, storage.ErrStaleGeneration on its
// own TakeOver).
func ExampleSession_TakeOver() {
	ctx := context.Background()
	s, err := iscsi.Login(ctx, "198.18.0.10:3260", "iqn.2026-11.com.example:vm1",
		iscsi.WithInitiatorName("iqn.2026-11.com.example:host-b"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close(ctx)
	if err := s.TakeOver(ctx, 1, 8); err != nil {
		fmt.Println(err)
	}
}
