package nbd

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/xenha/xenha/storage"
)

// scriptedServer answers every connection with the same bytes, reading and
// discarding what the client sends: enough to run examples without a server
// binary. The tests use real servers.
func scriptedServer(script []byte) (addr string, stop func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write(script)
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return l.Addr().String(), func() { l.Close() }
}

func exampleServer() (host string, port int, stop func()) {
	var b serverBytes
	b.greeting(flagFixedNewstyle|flagNoZeroes).
		infoExport(optInfo, 20<<30, FlagHasFlags|FlagSendFlush).
		reply(optInfo, repAck, nil).reply(optAbort, repAck, nil)
	addr, stop := scriptedServer(b.Bytes())
	tcp, _ := net.ResolveTCPAddr("tcp", addr)
	return tcp.IP.String(), tcp.Port, stop
}

func ExampleExportInfo() {
	host, port, stop := exampleServer()
	defer stop()
	ex, err := ExportInfo(context.Background(), net.JoinHostPort(host, fmt.Sprint(port)), "vm1-disk0")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %d GiB, read-only %v\n", ex.Name, ex.Size>>30, ex.ReadOnly())
	// Output: vm1-disk0: 20 GiB, read-only false
}

func ExampleNew() {
	host, port, stop := exampleServer()
	defer stop()
	b := New(WithHostName("dom0-a"))
	vol := storage.Volume{ID: "vm1-disk0", Kind: Kind, Generation: 3, Params: map[string]string{
		"server": host, "port": fmt.Sprint(port), "export": "vm1-disk0"}}
	src, err := b.Attach(context.Background(), vol)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(src.Type, src.Protocol, src.Name)

	vol.Generation = 2 // an old writer's view of the volume
	_, err = b.Attach(context.Background(), vol)
	fmt.Println(err != nil)
	// Output:
	// network nbd vm1-disk0
	// true
}
