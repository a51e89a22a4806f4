package powercut

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestCutSilencesAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	srv, cli := New(), New()
	ln, err := srv.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = io.Copy(io.Discard, c)
		}
		accepted <- err
	}()
	c, err := cli.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("renew")); err != nil {
		t.Fatal(err)
	}
	srv.Cut()
	// The server's connection closed under io.Copy; its listener refuses.
	select {
	case <-accepted:
	case <-ctx.Done():
		t.Fatal("cut did not close the accepted connection")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("listener accepted after the cut")
	}
	if _, err := srv.Dial(ctx, ln.Addr().String()); !errors.Is(err, ErrPoweredOff) {
		t.Fatalf("Dial while off = %v, want ErrPoweredOff", err)
	}
	if _, err := srv.Listen(ctx, "127.0.0.1:0"); !errors.Is(err, ErrPoweredOff) {
		t.Fatalf("Listen while off = %v, want ErrPoweredOff", err)
	}
	srv.Restore()
	ln2, err := srv.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen after Restore: %v", err)
	}
	ln2.Close()
}
