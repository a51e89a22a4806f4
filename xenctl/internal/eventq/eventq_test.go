package eventq

import (
	"context"
	"testing"
	"time"
)

func TestDrainKeepsOrderWithoutBlockingProducer(t *testing.T) {
	q := New[int]()
	const n = 1000
	for i := 0; i < n; i++ {
		q.Push(i) // no reader yet: must not block
	}
	ch := make(chan int)
	done := make(chan struct{})
	go func() { q.Drain(context.Background(), ch); close(done) }()
	for i := 0; i < n; i++ {
		if got := <-ch; got != i {
			t.Fatalf("item %d: got %d", i, got)
		}
	}
	q.Push(n)
	if got := <-ch; got != n {
		t.Fatalf("item pushed after draining: got %d, want %d", got, n)
	}
	q.Close()
	q.Close()
	<-done
}

func TestDrainEndsOnContext(t *testing.T) {
	q := New[string]()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Drain(ctx, make(chan string)); close(done) }()
	q.Push("never read")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after its context ended")
	}
}

func TestCloseStopsPendingSend(t *testing.T) {
	q := New[int]()
	q.Push(1)
	done := make(chan struct{})
	go func() { q.Drain(context.Background(), make(chan int)); close(done) }()
	q.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after Close")
	}
}
