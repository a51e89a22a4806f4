package libvirt

import (
	"context"
	"fmt"
	"sync"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/xenha/xenha/xenctl"
	"github.com/xenha/xenha/xenctl/internal/eventq"
)

var (
	eventLoopOnce sync.Once
	eventLoopErr  error
)

// startEventLoop registers libvirt's default event loop and runs it on a
// goroutine for the life of the process. libvirt allows one per process, and
// it must exist before the first connection for keepalive and callbacks to
// work.
func startEventLoop() error {
	eventLoopOnce.Do(func() {
		if eventLoopErr = libvirt.EventRegisterDefaultImpl(); eventLoopErr != nil {
			return
		}
		go func() {
			for {
				if err := libvirt.EventRunDefaultImpl(); err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	})
	return eventLoopErr
}

// raw is a lifecycle event as libvirt delivered it, copied out of the
// callback, which runs on the event loop and must not block.
type raw struct {
	name, uuid    string
	event, detail int
	at            time.Time
}

func rawEvent(d *libvirt.Domain, ev *libvirt.DomainEventLifecycle) *raw {
	r := &raw{event: int(ev.Event), detail: ev.Detail, at: time.Now()}
	r.name, _ = d.GetName()
	r.uuid, _ = d.GetUUIDString()
	return r
}

// queued is one item of the event queue: a raw lifecycle event, or a
// connection event made by the monitor.
type queued struct {
	gen       uint64
	raw       *raw
	kind      xenctl.EventKind // for connection events
	inventory []xenctl.Domain
}

// dispatch turns queued items into xenctl events for the subscribers.
func (h *Hypervisor) dispatch() {
	defer h.wg.Done()
	items := make(chan queued)
	go func() {
		h.queue.Drain(context.Background(), items) // until Close
		close(items)
	}()
	for it := range items {
		if it.raw == nil {
			h.publish(xenctl.Event{Kind: it.kind, Inventory: it.inventory, Time: time.Now()})
			continue
		}
		h.mu.Lock()
		current := it.gen == h.gen
		h.mu.Unlock()
		if !current {
			continue // from a connection already replaced; the inventory covers it
		}
		if ev, ok := h.lifecycle(it.raw); ok {
			h.publish(ev)
		}
	}
}

// lifecycle builds the xenctl event for a raw libvirt event. The state comes
// from the event itself, which is what happened, not from a later lookup that
// may already see the next change; size and persistence come from a lookup,
// best effort.
func (h *Hypervisor) lifecycle(r *raw) (xenctl.Event, bool) {
	kind, state, reason, known, ok := mapEvent(r.event, r.detail)
	if !ok {
		return xenctl.Event{}, false
	}
	d := xenctl.Domain{Name: r.name, UUID: r.uuid, State: state, Reason: reason}
	if kind != xenctl.EventUndefined {
		ctx, cancel := context.WithTimeout(h.life, 5*time.Second)
		got, err := h.Domain(ctx, r.name)
		cancel()
		if err == nil && got.UUID == r.uuid {
			d.MemoryKiB, d.VCPUs, d.Persistent = got.MemoryKiB, got.VCPUs, got.Persistent
			if !known {
				d.State = got.State
			}
		} else if !known {
			d.State = xenctl.StateShutoff
		}
	}
	return xenctl.Event{Kind: kind, Domain: d, Time: r.at}, true
}

func (h *Hypervisor) publish(ev xenctl.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.Push(ev)
	}
}

// Events delivers lifecycle events until ctx ends or the Hypervisor is closed.
// The channel survives reconnections, which show as EventDisconnected and
// EventReconnected. Subscribing while disconnected is allowed; the next event
// is then EventReconnected.
func (h *Hypervisor) Events(ctx context.Context) (<-chan xenctl.Event, error) {
	if ctx.Err() != nil {
		return nil, unavailable(ctx, h.uri, "subscribe to events")
	}
	s := eventq.New[xenctl.Event]()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("libvirt %s: subscribe to events: %w: connection closed", h.uri, xenctl.ErrUnavailable)
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	ch := make(chan xenctl.Event)
	go func() {
		defer func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
			close(ch)
		}()
		s.Drain(ctx, ch)
	}()
	return ch, nil
}
