package xenctltest

import (
	"context"
	"sync"
	"time"

	"github.com/xenha/xenha/xenctl"
)

// subscriber queues events without bound so that the host never blocks on a
// slow reader and no event is dropped: the fake is deterministic, and a test
// that reads late still sees every event in order.
type subscriber struct {
	mu     sync.Mutex
	queue  []xenctl.Event
	wake   chan struct{}
	done   chan struct{}
	closed bool
}

func (s *subscriber) push(ev xenctl.Event) {
	s.mu.Lock()
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
}

// Events delivers the host's lifecycle events until ctx ends or the host is
// closed. The channel stays open across daemon restarts, which show as
// EventDisconnected and EventReconnected.
func (h *Host) Events(ctx context.Context) (<-chan xenctl.Event, error) {
	c, err := h.begin(ctx, MethodEvents, "")
	if err != nil {
		return nil, c.end(err)
	}
	s := &subscriber{wake: make(chan struct{}, 1), done: make(chan struct{})}
	h.subs[s] = struct{}{}
	h.world.mu.Unlock()
	ch := make(chan xenctl.Event)
	go h.pump(ctx, s, ch)
	return ch, c.end(nil)
}

func (h *Host) pump(ctx context.Context, s *subscriber, ch chan<- xenctl.Event) {
	defer func() {
		h.world.mu.Lock()
		delete(h.subs, s)
		h.world.mu.Unlock()
		close(ch)
	}()
	for {
		s.mu.Lock()
		var ev xenctl.Event
		have := len(s.queue) > 0
		if have {
			ev = s.queue[0]
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		if !have {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			case <-s.done:
				return
			}
		}
		select {
		case ch <- ev:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// emit queues an event for every watcher. Events that happen while the daemon
// is down are lost, as with libvirt; the inventory of EventReconnected tells
// what changed. Call with the world locked.
func (h *Host) emit(kind xenctl.EventKind, d *domain) {
	if h.down || h.closed {
		return
	}
	ev := xenctl.Event{Kind: kind, Time: time.Now()}
	if d != nil {
		ev.Domain = d.view()
	}
	if kind == xenctl.EventReconnected {
		ev.Inventory = h.inventory()
	}
	for s := range h.subs {
		s.push(ev)
	}
}
