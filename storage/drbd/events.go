package drbd

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Event is one line of `drbdsetup events2`, with or without --timestamps and
// --statistics:
//
//	[2026-11-23T11:31:07.934252+00:00] change connection name:r0 peer-node-id:1 conn-name:b connection:Connected role:Secondary
type Event struct {
	Time time.Time // zero without --timestamps
	// Verb: "exists", "create", "change", "destroy", "call", "response".
	Verb string
	// Object: "resource", "device", "connection", "peer-device", "path",
	// "helper", or "-" (the "exists -" line that ends the initial state).
	Object string
	// Fields in order of appearance; values may contain ':'
	// (local:ipv4:198.18.0.1:7789).
	Fields []Field
}

// Field is one key:value of an event.
type Field struct{ Key, Value string }

// Get returns the value of key, or "".
func (e Event) Get(key string) string {
	for _, f := range e.Fields {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// ParseEvent parses one events2 line. Unknown verbs, objects and keys are
// kept, not refused; only a line with no verb or object is an error.
func ParseEvent(line string) (Event, error) {
	fs := strings.Fields(line)
	var ev Event
	if len(fs) > 0 && len(fs[0]) >= 20 && fs[0][4] == '-' && fs[0][10] == 'T' {
		t, err := time.Parse(time.RFC3339Nano, fs[0])
		if err != nil {
			return Event{}, fmt.Errorf("%w: events2 timestamp %q: %v", ErrParse, fs[0], err)
		}
		ev.Time, fs = t, fs[1:]
	}
	if len(fs) < 2 {
		return Event{}, fmt.Errorf("%w: events2 line %q has no verb and object", ErrParse, line)
	}
	ev.Verb, ev.Object = fs[0], fs[1]
	for _, f := range fs[2:] {
		k, v, ok := strings.Cut(f, ":")
		if !ok || k == "" {
			continue // tolerate words that are not key:value
		}
		ev.Fields = append(ev.Fields, Field{k, v})
	}
	return ev, nil
}

// State is what a stream of events2 events says about resources, kept up to
// date by Apply. Events may come out of order (a change before its create,
// a device before its resource): objects are created on first mention.
type State struct {
	// Initial is true once the "exists -" line ended the initial dump.
	Initial   bool
	resources map[string]*Resource
}

// NewState returns an empty State.
func NewState() *State { return &State{resources: map[string]*Resource{}} }

// Resource returns a copy of the named resource, or false.
func (s *State) Resource(name string) (Resource, bool) {
	r, ok := s.resources[name]
	if !ok {
		return Resource{}, false
	}
	return r.clone(), true
}

// Resources returns copies of all resources, sorted by name.
func (s *State) Resources() []Resource {
	var out []Resource
	for _, k := range slices.Sorted(maps.Keys(s.resources)) {
		out = append(out, s.resources[k].clone())
	}
	return out
}

func (r *Resource) clone() Resource {
	c := *r
	c.Devices = slices.Clone(r.Devices)
	c.Connections = slices.Clone(r.Connections)
	for i := range c.Connections {
		c.Connections[i].PeerDevices = slices.Clone(c.Connections[i].PeerDevices)
	}
	return c
}

// splitBrainHelpers are the helpers the kernel calls when it detects a split
// brain (after a connection, or at first connect).
var splitBrainHelpers = map[string]bool{"split-brain": true, "initial-split-brain": true}

// Apply folds one event into the state.
func (s *State) Apply(ev Event) {
	if ev.Object == "-" {
		if ev.Verb == "exists" {
			s.Initial = true
		}
		return
	}
	name := ev.Get("name")
	if name == "" {
		return
	}
	r := s.resources[name]
	if r == nil {
		if ev.Verb == "destroy" {
			return
		}
		r = &Resource{Name: name}
		s.resources[name] = r
	}
	switch ev.Object {
	case "resource":
		if ev.Verb == "destroy" {
			delete(s.resources, name)
			return
		}
		for _, f := range ev.Fields {
			r.set(f.Key, f.Value)
		}
	case "device":
		vol := atoi(ev.Get("volume"), 0)
		if ev.Verb == "destroy" {
			r.Devices = slices.DeleteFunc(r.Devices, func(d Device) bool { return d.Volume == vol })
			return
		}
		d := r.Device(vol)
		if d == nil {
			r.Devices = append(r.Devices, Device{Volume: vol, Minor: -1})
			d = &r.Devices[len(r.Devices)-1]
		}
		for _, f := range ev.Fields {
			d.set(f.Key, f.Value)
		}
		slices.SortFunc(r.Devices, func(a, b Device) int { return a.Volume - b.Volume })
	case "connection", "peer-device", "helper":
		id := atoi(ev.Get("peer-node-id"), -1)
		if id < 0 {
			return // a resource-wide helper: nothing to record per peer
		}
		c := r.connection(id)
		if ev.Object == "connection" && ev.Verb == "destroy" {
			r.Connections = slices.DeleteFunc(r.Connections, func(c Connection) bool { return c.PeerNodeID == id })
			return
		}
		switch ev.Object {
		case "connection":
			for _, f := range ev.Fields {
				c.set(f.Key, f.Value)
			}
			if c.State == "Connected" {
				// Reconnected: someone resolved the split brain (an
				// operator, or DRBD's configured after-sb policy).
				c.SplitBrain = false
			}
		case "peer-device":
			c.applyPeerDevice(ev)
		case "helper":
			if ev.Verb == "call" && splitBrainHelpers[ev.Get("helper")] {
				c.SplitBrain = true
			}
		}
		if n := ev.Get("conn-name"); n != "" {
			c.Name = n
		}
	}
}

func (r *Resource) connection(id int) *Connection {
	for i := range r.Connections {
		if r.Connections[i].PeerNodeID == id {
			return &r.Connections[i]
		}
	}
	r.Connections = append(r.Connections, Connection{PeerNodeID: id})
	slices.SortFunc(r.Connections, func(a, b Connection) int { return a.PeerNodeID - b.PeerNodeID })
	return r.connection(id)
}

func (c *Connection) applyPeerDevice(ev Event) {
	vol := atoi(ev.Get("volume"), 0)
	if ev.Verb == "destroy" {
		c.PeerDevices = slices.DeleteFunc(c.PeerDevices, func(p PeerDevice) bool { return p.Volume == vol })
		return
	}
	var pd *PeerDevice
	for i := range c.PeerDevices {
		if c.PeerDevices[i].Volume == vol {
			pd = &c.PeerDevices[i]
		}
	}
	if pd == nil {
		c.PeerDevices = append(c.PeerDevices, PeerDevice{Volume: vol})
		pd = &c.PeerDevices[len(c.PeerDevices)-1]
	}
	if ev.Get("done") == "" {
		pd.Done = nil // the sync ended or never ran
	}
	for _, f := range ev.Fields {
		pd.set(f.Key, f.Value)
	}
}

// ParseEvents reads events2 output to the end, folding it into a State and
// returning the events. Lines it cannot parse are skipped and reported
// together in the error, after everything else was read.
func ParseEvents(r io.Reader) (*State, []Event, error) {
	st := NewState()
	var evs []Event
	var bad []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		ev, err := ParseEvent(line)
		if err != nil {
			if len(bad) < 5 {
				bad = append(bad, fmt.Sprintf("line %d: %v", n, err))
			}
			continue
		}
		st.Apply(ev)
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		return st, evs, err
	}
	if len(bad) > 0 {
		return st, evs, fmt.Errorf("%w: %s", ErrParse, strings.Join(bad, "; "))
	}
	return st, evs, nil
}
