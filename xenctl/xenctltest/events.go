package xenctltest

import (
	"context"
	"time"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/internal/eventq"
)

// Events delivers the host's lifecycle events until ctx ends or the host is
// closed. The channel stays open across daemon restarts, which show as
// EventDisconnected and EventReconnected.
func (h *Host) Events(ctx context.Context) (<-chan xenctl.Event, error) {
	c, err := h.begin(ctx, MethodEvents, "")
	if err != nil {
		return nil, c.end(err)
	}
	// Unbounded so that the host never blocks on a slow reader and no event
	// is dropped: the fake is deterministic, and a test that reads late still
	// sees every event in order.
	s := eventq.New[xenctl.Event]()
	h.subs[s] = struct{}{}
	h.world.mu.Unlock()
	ch := make(chan xenctl.Event)
	go h.pump(ctx, s, ch)
	return ch, c.end(nil)
}

func (h *Host) pump(ctx context.Context, s *eventq.Queue[xenctl.Event], ch chan<- xenctl.Event) {
	defer func() {
		h.world.mu.Lock()
		delete(h.subs, s)
		h.world.mu.Unlock()
		close(ch)
	}()
	s.Drain(ctx, ch)
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
		s.Push(ev)
	}
}
