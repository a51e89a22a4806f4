// Package eventq is the unbounded, ordered queue behind each Events channel of
// the xenctl implementations. It is unbounded so that the producer (libvirt's
// event loop, or the fake host holding its world lock) never blocks on a slow
// reader and no event is dropped; it is pure Go so that both the cgo libvirt
// backend and the fake can share it.
package eventq

import (
	"context"
	"sync"
)

// Queue buffers values for one consumer without bound, in order. The zero
// value is not usable; make one with New.
type Queue[T any] struct {
	mu     sync.Mutex
	items  []T
	wake   chan struct{}
	done   chan struct{}
	closed bool
}

// New returns an empty, open queue.
func New[T any]() *Queue[T] {
	return &Queue[T]{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Push appends v and wakes the consumer. It never blocks.
func (q *Queue[T]) Push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Close makes Drain return, dropping whatever is still queued. Closing twice
// is harmless.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
}

// Drain sends queued values to ch in order, waiting for more, until ctx ends
// or the queue is closed. It does not close ch: the caller does, after its own
// clean-up, so the reader sees the end only once the subscription is gone.
func (q *Queue[T]) Drain(ctx context.Context, ch chan<- T) {
	for {
		q.mu.Lock()
		var v T
		have := len(q.items) > 0
		if have {
			v = q.items[0]
			q.items = q.items[1:]
		}
		q.mu.Unlock()
		if !have {
			select {
			case <-q.wake:
				continue
			case <-ctx.Done():
				return
			case <-q.done:
				return
			}
		}
		select {
		case ch <- v:
		case <-ctx.Done():
			return
		case <-q.done:
			return
		}
	}
}
