package ha

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// EventKind names what happened. Kinds are stable strings, so embedders can
// log and match them; the failover code adds its own.
type EventKind string

// Event kinds emitted by the cluster core.
const (
	EventLeaderElected  EventKind = "leader.elected"  // this member became leader
	EventLeaderLost     EventKind = "leader.lost"     // this member stopped being leader
	EventLeaderChanged  EventKind = "leader.changed"  // this member observed a new leader (Host)
	EventMemberJoined   EventKind = "member.joined"   // Host was added to the cluster
	EventMemberLeft     EventKind = "member.left"     // Host left or was removed
	EventMemberPromoted EventKind = "member.promoted" // Host became a voter
	EventApplied        EventKind = "state.applied"   // a command changed the state (Message: kind)
	EventRefused        EventKind = "state.refused"   // a command was refused (Message: why)
	EventHalted         EventKind = "member.halted"   // this member met a log entry it cannot apply
	EventStoreFailed    EventKind = "store.failed"    // writing this member's Raft log failed (Message: why, e.g. a full disk)
	EventStoreRecovered EventKind = "store.recovered" // writing this member's Raft log works again
)

// Event is one thing that happened, as seen by this member.
type Event struct {
	Kind    EventKind `json:"kind"`
	Host    string    `json:"host,omitempty"`
	VM      string    `json:"vm,omitempty"`
	Message string    `json:"message,omitempty"`
	Index   uint64    `json:"index,omitempty"` // log index, for state events
	Time    time.Time `json:"time"`
}

// eventBuffer is each subscriber's channel capacity.
const eventBuffer = 256

// events fans events out to subscribers without ever blocking the emitter
// (which is often the FSM): a subscriber whose buffer is full loses the event,
// and the loss is counted.
type events struct {
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	dropped atomic.Uint64
}

type subscriber struct {
	ch      chan Event
	dropped uint64
}

func (e *events) subscribe(ctx context.Context) <-chan Event {
	s := &subscriber{ch: make(chan Event, eventBuffer)}
	e.mu.Lock()
	if e.subs == nil {
		e.subs = map[*subscriber]struct{}{}
	}
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	go func() {
		<-ctx.Done()
		e.mu.Lock()
		delete(e.subs, s)
		close(s.ch)
		e.mu.Unlock()
	}()
	return s.ch
}

func (e *events) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.subs {
		select {
		case s.ch <- ev:
		default:
			s.dropped++
			e.dropped.Add(1)
		}
	}
}

// Subscribe returns a stream of this member's events until ctx ends (then
// the channel is closed). The stream is buffered; a consumer that falls
// behind loses events rather than slowing the cluster: EventsDropped counts
// them.
func (c *Cluster) Subscribe(ctx context.Context) <-chan Event {
	return c.events.subscribe(ctx)
}

// EventsDropped is how many events slow subscribers lost, in total.
func (c *Cluster) EventsDropped() uint64 { return c.events.dropped.Load() }

// emit sends e to the embedders' event stream; it never blocks.
func (c *Cluster) emit(e Event) { c.events.emit(e) }
