package nfs_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/storage/nfs"
)

// A health check of an image on an export without mounting it. A server
// that does not answer is storage.ErrUnreachable.
func ExampleProbe() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = nfs.Probe(ctx, "127.0.0.1:"+strconv.Itoa(port), "/srv/vm", "vm1.img")
	fmt.Println("unreachable:", errors.Is(err, storage.ErrUnreachable))
	// Output: unreachable: true
}

// A host-mount backend. Bad parameters are refused before anything runs.
func ExampleNew() {
	b := nfs.New("host-a", nfs.WithMode(nfs.HostMount), nfs.WithStatTimeout(3*time.Second))
	vol := storage.Volume{ID: "vm1-disk0", Kind: nfs.Kind, Generation: 4, Params: map[string]string{
		nfs.ParamServer:  "198.18.0.10",
		nfs.ParamExport:  "/srv/vm",
		nfs.ParamPath:    "../etc/shadow",
		nfs.ParamOptions: "nolock",
	}}
	_, err := b.Attach(context.Background(), vol)
	fmt.Println(errors.Is(err, storage.ErrInvalidVolume))
	// Output: true
}
