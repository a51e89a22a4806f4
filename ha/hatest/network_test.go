package hatest

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestFabricPartitionCutsAndHeals(t *testing.T) {
	for _, mem := range []bool{true, false} {
		name := map[bool]string{true: "mem", false: "tcp"}[mem]
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			f := NewFabric(mem)
			addr := "b:1"
			if !mem {
				addr = "127.0.0.1:0"
			}
			ln, err := f.For("b").Listen(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go io.Copy(c, c) // echo
				}
			}()
			a := f.For("a")
			conn, err := a.Dial(ctx, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			echo := func(c net.Conn) error {
				if _, err := c.Write([]byte("ping")); err != nil {
					return err
				}
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 4)
				_, err := io.ReadFull(c, buf)
				return err
			}
			if err := echo(conn); err != nil {
				t.Fatal(err)
			}
			f.Partition([]string{"a"})
			if err := echo(conn); err == nil {
				t.Fatal("open connection survived the partition")
			}
			if _, err := a.Dial(ctx, ln.Addr().String()); !errors.Is(err, ErrPartitioned) {
				t.Fatalf("dial across the partition: %v", err)
			}
			f.Heal()
			conn2, err := a.Dial(ctx, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			if err := echo(conn2); err != nil {
				t.Fatal(err)
			}
			conn2.Close()
		})
	}
}

func TestPipeDeadline(t *testing.T) {
	a, b := newPipe("x")
	defer a.Close()
	defer b.Close()
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := a.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline: %v, want a timeout", err)
	}
	// Writes never wait for the reader.
	if _, err := b.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := a.Write([]byte{1}); err == nil {
		t.Fatal("write to a closed pipe succeeded")
	}
}
